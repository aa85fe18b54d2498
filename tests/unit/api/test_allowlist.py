"""IP allowlists: who may reach the registry and the management API, and how each client sees a refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from starlette.types import Message, Receive, Scope, Send

from dockyard.api.allowlist import AUDIT_EVERY_SECONDS, AllowlistMiddleware, InvalidNetwork
from dockyard.audit.interfaces import ActorKind, AuditAction, AuditResult
from dockyard.audit.services import CollectingRecorder
from dockyard.config.loader import load_config
from dockyard.errors import ConfigError


class Backend:
    """The app behind the middleware: answers 200 "ok" and counts the requests that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


def call(app: Any, client: str, method: str, path: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as http:
            return await http.request(method, path)

    return asyncio.run(run())


def allowlisted(
    registry: list[str], management: list[str], **kwargs: Any
) -> tuple[AllowlistMiddleware, Backend]:
    backend = Backend()
    return AllowlistMiddleware(backend, registry, management, **kwargs), backend


def test_empty_lists_let_everyone_in() -> None:
    app, backend = allowlisted([], [])
    for client in ["203.0.113.5", "2001:db8::1", "127.0.0.1"]:
        for path in ["/v2/", "/api/v1/projects", "/ui/", "/metrics"]:
            assert call(app, client, "GET", path).status_code == 200
    assert backend.calls == 12


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("10.20.30.40", True),  # in 10.0.0.0/8
        ("11.0.0.1", False),
        ("192.168.1.7", True),  # a single address
        ("192.168.1.8", False),
        ("2001:db8:5::9", True),  # in 2001:db8::/32
        ("2001:db9::1", False),
        ("::1", True),  # a single IPv6 address
        ("::ffff:10.1.2.3", True),  # an IPv4 client on a dual-stack socket is its IPv4 address
        ("::ffff:11.1.2.3", False),
        ("not-an-address", False),
    ],
)
def test_registry_list_decides_every_path(client: str, allowed: bool) -> None:
    app, backend = allowlisted(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"], [])
    for path in ["/v2/team/app/manifests/1.0", "/token", "/api/v1/projects", "/metrics"]:
        assert call(app, client, "GET", path).status_code == (200 if allowed else 403), path
    assert backend.calls == (4 if allowed else 0)


def test_management_list_applies_to_api_and_ui_on_top_of_the_registry_list() -> None:
    app, _ = allowlisted(["10.0.0.0/8", "192.0.2.0/24"], ["10.1.0.0/16"])
    cases = {
        # client: (/v2, /api, /ui)
        "10.1.2.3": (200, 200, 200),  # in both lists
        "10.2.0.1": (200, 403, 403),  # may pull and push, not manage
        "192.0.2.1": (200, 403, 403),
        "198.51.100.1": (403, 403, 403),  # in neither
    }
    for client, expected in cases.items():
        got = tuple(call(app, client, "GET", path).status_code for path in ["/v2/", "/api/v1/users", "/ui/"])
        assert got == expected, client


def test_management_list_alone_leaves_the_registry_open() -> None:
    app, _ = allowlisted([], ["127.0.0.1"])
    assert call(app, "198.51.100.1", "GET", "/v2/").status_code == 200
    assert call(app, "198.51.100.1", "GET", "/api/v1/users").status_code == 403
    assert call(app, "127.0.0.1", "GET", "/api/v1/users").status_code == 200


def test_management_prefixes_match_whole_path_segments() -> None:
    app, _ = allowlisted([], ["127.0.0.1"], management_prefixes=("/api", "/ui"))
    assert call(app, "198.51.100.1", "GET", "/api").status_code == 403
    assert call(app, "198.51.100.1", "GET", "/uifoo").status_code == 200
    assert call(app, "198.51.100.1", "GET", "/apiary/v1").status_code == 200


def test_a_v2_refusal_is_an_oci_error_registry_clients_understand() -> None:
    app, _ = allowlisted(["10.0.0.0/8"], [])
    for path in ["/v2/", "/v2/team/app/blobs/uploads/", "/token"]:
        response = call(app, "203.0.113.9", "POST" if "uploads" in path else "GET", path)
        assert response.status_code == 403
        assert response.headers["docker-distribution-api-version"] == "registry/2.0"
        assert response.headers["content-type"] == "application/json"
        (error,) = response.json()["errors"]
        assert error["code"] == "DENIED"
        assert "not allowed" in error["message"]
        assert error["detail"] == {"client_ip": "203.0.113.9"}  # says which address the server saw


def test_an_api_refusal_has_the_shape_fastapi_gives_its_own_errors() -> None:
    fastapi_app = FastAPI()

    @fastapi_app.get("/api/v1/forbidden")
    def forbidden() -> None:
        raise HTTPException(status_code=403, detail="forbidden")

    native = call(fastapi_app, "10.0.0.1", "GET", "/api/v1/forbidden")
    app, _ = allowlisted([], ["10.0.0.0/8"])
    refused = call(app, "203.0.113.9", "GET", "/api/v1/forbidden")
    assert refused.status_code == native.status_code == 403
    assert refused.headers["content-type"] == native.headers["content-type"] == "application/json"
    assert set(refused.json()) == set(native.json()) == {"detail"}
    assert "203.0.113.9" in refused.json()["detail"]


def test_other_refusals_are_plain_text() -> None:
    app, _ = allowlisted(["10.0.0.0/8"], [])
    response = call(app, "203.0.113.9", "GET", "/metrics")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert "not allowed" in response.text and "203.0.113.9" in response.text


def test_a_refused_head_has_no_body() -> None:
    app, _ = allowlisted(["10.0.0.0/8"], [])
    response = call(app, "203.0.113.9", "HEAD", "/v2/team/app/manifests/1.0")
    assert response.status_code == 403
    assert response.content == b""
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def run_raw(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(path: str, client: tuple[str, int] | None) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "client": client}


def test_a_request_without_a_known_peer_is_refused_when_a_list_is_set() -> None:
    app, _ = allowlisted(["10.0.0.0/8"], [])
    assert run_raw(app, http_scope("/v2/", None))[0]["status"] == 403
    open_app, _ = allowlisted([], [])
    assert run_raw(open_app, http_scope("/v2/", None))[0]["status"] == 200


def test_lifespan_passes_through_and_a_refused_websocket_is_closed() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    app = AllowlistMiddleware(inner, ["10.0.0.0/8"], [])
    run_raw(app, {"type": "lifespan"})
    assert seen == ["lifespan"]
    sent = run_raw(
        app, {"type": "websocket", "path": "/ui/live", "headers": [], "client": ("203.0.113.9", 1)}
    )
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert seen == ["lifespan"]


def test_refusals_are_audited_once_a_minute_per_address() -> None:
    recorder = CollectingRecorder()
    now = [1000.0]
    app, _ = allowlisted(["10.0.0.0/8"], [], audit=recorder, clock=lambda: now[0])
    for _ in range(5):
        call(app, "203.0.113.9", "GET", "/v2/")
    call(app, "198.51.100.1", "GET", "/api/v1/users")
    call(app, "10.0.0.1", "GET", "/v2/")  # allowed: not an event
    assert [event.client_ip for event in recorder.events] == ["203.0.113.9", "198.51.100.1"]
    first = recorder.events[0]
    assert (first.action, first.result, first.actor_kind) == (
        AuditAction.ACCESS_DENIED,
        AuditResult.DENIED,
        ActorKind.ANONYMOUS,
    )
    assert first.detail == {"reason": "ip_allowlist", "method": "GET", "path": "/v2/"}
    now[0] += AUDIT_EVERY_SECONDS
    call(app, "203.0.113.9", "GET", "/v2/")
    assert len(recorder.events) == 3


def test_an_invalid_network_names_its_setting() -> None:
    with pytest.raises(InvalidNetwork, match=r"auth\.management_allow_ips: '10\.0\.0\.0/33'"):
        AllowlistMiddleware(Backend(), ["10.0.0.0/8"], ["10.0.0.0/33"])


# --- the settings -------------------------------------------------------------------------------


def write_config(tmp_path: Path, auth: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(f"auth:\n{auth}")
    return path


@pytest.mark.parametrize(
    ("yaml_lines", "key", "bad"),
    [
        ("  allow_ips: [10.0.0.0/8, 10.0.0.300]\n", "auth.allow_ips", "10.0.0.300"),
        ("  management_allow_ips: [fe80::/129]\n", "auth.management_allow_ips", "fe80::/129"),
        ("  allow_ips: [intranet]\n", "auth.allow_ips", "intranet"),
    ],
)
def test_invalid_networks_in_the_config_are_a_startup_error_naming_the_key(
    tmp_path: Path, yaml_lines: str, key: str, bad: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, yaml_lines), environ={})
    assert raised.value.message.startswith(f"{key}: '{bad}' is not an IP address or CIDR network")


def test_valid_networks_load_from_the_file_and_from_a_comma_separated_variable(tmp_path: Path) -> None:
    settings = load_config(
        write_config(tmp_path, "  allow_ips: [10.0.0.0/8, '2001:db8::/32', 192.0.2.7]\n"),
        environ={"DOCKYARD_AUTH_MANAGEMENT_ALLOW_IPS": "127.0.0.1, ::1,10.1.0.0/16"},
    ).settings
    assert settings.auth.allow_ips == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
    assert settings.auth.management_allow_ips == ["127.0.0.1", "::1", "10.1.0.0/16"]
    with pytest.raises(ConfigError, match="DOCKYARD_AUTH_ALLOW_IPS"):
        load_config(None, environ={"DOCKYARD_AUTH_ALLOW_IPS": "10.0.0.0/8,nope"})
