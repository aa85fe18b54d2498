"""Trusted proxies: which client, scheme and host a request is taken to come from."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from dockyard.api.allowlist import InvalidNetwork
from dockyard.api.forwarded import ForwardedMiddleware, ForwardedRequest, TrustedProxies
from dockyard.api.middleware import PEER_KEY
from dockyard.config.loader import load_config
from dockyard.errors import ConfigError

pytestmark = pytest.mark.db_independent

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8:1::/48"])


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in values.items()]


def resolve(peer: str | None, **values: str) -> ForwardedRequest | None:
    return PROXIES.resolve(peer, headers(**values))


def test_an_untrusted_peer_is_not_believed_whatever_it_sends() -> None:
    spoofed = {"x_forwarded_for": "203.0.113.5", "x_forwarded_proto": "https", "forwarded": "for=1.2.3.4"}
    assert resolve("192.0.2.7", **spoofed) is None
    assert resolve(None, **spoofed) is None  # no peer (a Unix socket): nobody to trust
    assert TrustedProxies([]).resolve("10.0.0.1", headers(**spoofed)) is None
    assert not TrustedProxies([])


def test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() -> None:
    # The client wrote 6.6.6.6 itself; the edge proxy appended the client's real address, an inner
    # proxy (10.1.1.1) appended the edge proxy's.
    found = resolve("10.2.2.2", x_forwarded_for="6.6.6.6, 203.0.113.5, 10.1.1.1")
    assert found == ForwardedRequest("203.0.113.5", None, None)
    # Several headers count as one list, in order.
    two = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.5")]
    assert PROXIES.resolve("10.0.0.1", two) == ForwardedRequest("203.0.113.5", None, None)


def test_hops_with_ports_brackets_and_mapped_addresses() -> None:
    assert resolve("10.0.0.1", x_forwarded_for="203.0.113.5:4711").client == "203.0.113.5"  # type: ignore[union-attr]
    assert resolve("10.0.0.1", x_forwarded_for="[2001:db8:9::7]:443").client == "2001:db8:9::7"  # type: ignore[union-attr]
    assert resolve("10.0.0.1", x_forwarded_for="2001:db8:9::7").client == "2001:db8:9::7"  # type: ignore[union-attr]
    # The proxy reached over a dual-stack socket is still the trusted 10.0.0.1.
    assert resolve("::ffff:10.0.0.1", x_forwarded_for="203.0.113.5").client == "203.0.113.5"  # type: ignore[union-attr]
    assert resolve("2001:db8:1::5", x_forwarded_for="203.0.113.5").client == "203.0.113.5"  # type: ignore[union-attr]


def test_an_unreadable_hop_stops_the_walk_at_the_last_address_vouched_for() -> None:
    found = resolve("10.0.0.1", x_forwarded_for="203.0.113.5, unknown, 10.3.3.3")
    assert found is not None and found.client == "10.3.3.3"
    only_garbage = resolve("10.0.0.1", x_forwarded_for="<script>")
    assert only_garbage is None  # nothing usable: the peer stays the client


def test_all_hops_trusted_gives_the_leftmost() -> None:
    assert resolve("10.0.0.1", x_forwarded_for="10.9.9.9, 10.8.8.8").client == "10.9.9.9"  # type: ignore[union-attr]


def test_scheme_and_host_come_from_the_rightmost_values() -> None:
    found = resolve("10.0.0.1", x_forwarded_proto="http, https", x_forwarded_host="registry.example.com")
    assert found == ForwardedRequest(None, "https", "registry.example.com")
    assert resolve("10.0.0.1", x_forwarded_proto="gopher") is None  # not a scheme we serve
    bad_host = resolve("10.0.0.1", x_forwarded_host="evil.com/path?", x_forwarded_proto="https")
    assert bad_host == ForwardedRequest(None, "https", None)
    assert resolve("10.0.0.1", x_forwarded_host="[2001:db8::1]:5000").host == "[2001:db8::1]:5000"  # type: ignore[union-attr]


def test_forwarded_header_is_read_when_there_is_no_x_forwarded_for() -> None:
    value = 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;host="reg.example.com", for=10.4.4.4'
    found = resolve("10.0.0.1", forwarded=value)
    assert found == ForwardedRequest("2001:db8:cafe::17", "https", "reg.example.com")
    assert resolve("10.0.0.1", forwarded='for="_hidden"') is None  # an obfuscated name: the peer stays
    assert resolve("10.0.0.1", forwarded="for=203.0.113.5;;garbage") is not None


def test_x_forwarded_for_wins_over_a_forwarded_header_the_proxy_passed_through() -> None:
    found = resolve("10.0.0.1", x_forwarded_for="203.0.113.5", forwarded="for=6.6.6.6")
    assert found is not None and found.client == "203.0.113.5"


def test_bad_cidrs_are_refused() -> None:
    with pytest.raises(InvalidNetwork, match=r"http\.trusted_proxies"):
        TrustedProxies(["10.0.0.0/33"])


def test_the_setting_reads_comma_separated_from_the_environment(tmp_path: Any) -> None:
    loaded = load_config(None, {"DOCKYARD_HTTP_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7"})
    assert loaded.settings.http.trusted_proxies == ["10.0.0.0/8", "192.0.2.7"]
    assert loaded.settings.http.drain_timeout == "30s"
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_config(None, {"DOCKYARD_HTTP_TRUSTED_PROXIES": "not-a-network"})
    with pytest.raises(ConfigError, match="drain_timeout"):
        load_config(None, {"DOCKYARD_HTTP_DRAIN_TIMEOUT": "soon"})


def _seen_by_app(scope: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(inner: Scope, receive: Receive, send: Send) -> None:
        seen.update(inner)

    async def nothing() -> Any:
        return {}

    async def ignore(message: Any) -> None:
        return None

    asyncio.run(ForwardedMiddleware(app, PROXIES)(scope, nothing, ignore))
    return seen


def test_the_middleware_rewrites_client_scheme_and_host_and_keeps_the_peer() -> None:
    scope = {
        "type": "http",
        "scheme": "http",
        "client": ("10.0.0.1", 5555),
        "headers": headers(
            host="node1:5000",
            x_forwarded_for="203.0.113.5",
            x_forwarded_proto="https",
            x_forwarded_host="registry.example.com",
        ),
    }
    seen = _seen_by_app(scope)
    assert seen["client"] == ("203.0.113.5", 0)
    assert seen["scheme"] == "https"
    assert (b"host", b"registry.example.com") in seen["headers"]
    assert (b"host", b"node1:5000") not in seen["headers"]
    assert seen[PEER_KEY] == ("10.0.0.1", 5555)
    untrusted = {**scope, "client": ("192.0.2.1", 5555)}
    assert _seen_by_app(untrusted) == untrusted


def test_registry2_draintimeout_sets_the_drain_timeout(tmp_path: Any) -> None:
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nhttp:\n  addr: :5000\n  draintimeout: 45s\n")
    loaded = load_config(config, {})
    assert loaded.settings.http.drain_timeout == "45s"
    assert not any("draintimeout" in warning for warning in loaded.warnings)
