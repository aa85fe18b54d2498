"""The SSRF guard of webhook deliveries with real sockets: names that resolve to the metadata address
or to loopback are refused before any connection (unless allowed), a mixed answer connects only to
the permitted address, and redirects are answered, never followed."""

from __future__ import annotations

import pytest

from dockyard.upstream.addresses import Resolver
from dockyard.upstream.interfaces import UpstreamAddressRefused
from dockyard.webhooks.delivery import policy_post
from tests.support.receivers import running_receiver

pytestmark = pytest.mark.db_independent
HEADERS = [("Content-Type", "application/json")]


def resolving(table: dict[str, list[str]]) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "addresses", [["169.254.169.254"], ["127.0.0.1"], ["10.0.0.5"], ["::1"], ["::ffff:169.254.169.254"]]
)
def test_a_name_resolving_to_a_refused_address_is_not_connected_to(addresses: list[str]) -> None:
    with running_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        post = policy_post([], resolving({"hooks.example": addresses}))
        with pytest.raises(UpstreamAddressRefused, match="may not fetch from"):
            post(f"http://hooks.example:{port}/events", b"{}", HEADERS, 5.0, True)
        assert receiver.requests == []


def test_allowed_networks_let_a_loopback_name_through() -> None:
    with running_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        refused = policy_post([], resolving({"hooks.example": ["127.0.0.1"]}))
        with pytest.raises(UpstreamAddressRefused):
            refused(f"http://hooks.example:{port}/events", b"{}", HEADERS, 5.0, True)
        allowed = policy_post(["127.0.0.0/8"], resolving({"hooks.example": ["127.0.0.1"]}))
        assert allowed(f"http://hooks.example:{port}/events", b'{"a": 1}', HEADERS, 5.0, True) == 200
        assert [r.body for r in receiver.requests] == [{"a": 1}]


def test_only_the_permitted_address_of_a_mixed_answer_is_used() -> None:
    """A name answering the metadata address and an allowed one (rebinding tricks) connects to the
    allowed one only."""
    with running_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        post = policy_post(["127.0.0.0/8"], resolving({"hooks.example": ["169.254.169.254", "127.0.0.1"]}))
        assert post(f"http://hooks.example:{port}/events", b"{}", HEADERS, 5.0, True) == 200


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "inside"])
def test_redirects_are_not_followed(location: str) -> None:
    with running_receiver() as inside, running_receiver() as redirecting:
        redirecting.redirect_to = inside.url if location == "inside" else location
        post = policy_post(["127.0.0.0/8"])
        assert post(redirecting.url, b"{}", HEADERS, 5.0, True) == 302
        assert len(redirecting.requests) == 1 and inside.requests == []
