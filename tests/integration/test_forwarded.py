"""Behind a load balancer: a real `dockyard serve` with `http.trusted_proxies` takes the client from
X-Forwarded-For (and scheme/host from X-Forwarded-Proto/-Host) only when the connection comes from a
trusted proxy, and uses that client everywhere: the login limit per address, the audit log, the IP
allowlist, the access log and the token realm.

The "proxy" is 127.0.0.1 (trusted); requests from 127.0.0.2 play a client reaching the node directly,
whose forwarding headers must be ignored. The forwarded addresses are documentation ranges: only
header text, no traffic goes to them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "forwarded-admin-password-1")
MAX_FAILURES = 3
PROXY, DIRECT = "127.0.0.1", "127.0.0.2"
CONFIG: dict[str, Any] = {
    "auth": {
        "enabled": True,
        "login_limit": {
            "max_failures": MAX_FAILURES,
            "max_failures_per_address": MAX_FAILURES,
            "window": "1m",
        },
        # The harness polls /v2/ from 127.0.0.1 without headers; the forwarded clients are 203.0.113.0/24.
        "allow_ips": ["127.0.0.0/8", "203.0.113.0/24"],
    },
    "http": {"workers": 1, "trusted_proxies": ["127.0.0.1/32"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("forwarded"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


def from_peer(server: RunningServer, peer: str, client: str | None = None, **headers: str) -> httpx.Client:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if client is not None:
        sent["X-Forwarded-For"] = client
    transport = httpx.HTTPTransport(local_address=peer)
    return httpx.Client(base_url=server.url, transport=transport, headers=sent, timeout=HTTP_TIMEOUT)


def token_login(http: httpx.Client, username: str, password: str) -> int:
    answer = http.get("/token", params={"service": "dockyard"}, auth=(username, password))
    return answer.status_code


def audit_events(server: RunningServer, **filters: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    with from_peer(server, DIRECT) as http:
        while True:  # events are written in batches, about once a second
            answer = http.get("/api/v1/audit", params={"page_size": "100", **filters}, auth=ADMIN)
            assert answer.status_code == 200, answer.text
            events: list[dict[str, Any]] = answer.json()
            if events or time.monotonic() > deadline:
                return events
            time.sleep(0.3)


def test_the_login_limit_counts_per_forwarded_client(server: RunningServer) -> None:
    sprayer, bystander = "203.0.113.66", "203.0.113.67"
    with from_peer(server, PROXY, sprayer) as http:
        for n in range(MAX_FAILURES):
            assert token_login(http, f"nobody-{n}", "wrong-password") == 401
        # The address is now over its limit: even the right password is refused from it.
        assert token_login(http, *ADMIN) == 401
    # Another client behind the same proxy is not punished for it.
    with from_peer(server, PROXY, bystander) as http:
        assert token_login(http, *ADMIN) == 200


def test_audit_events_name_the_forwarded_client_and_spoofing_is_ignored(server: RunningServer) -> None:
    with from_peer(server, PROXY, "198.51.100.1, 203.0.113.10") as http:
        assert token_login(http, "audited-user", "wrong-password") == 401
    # A client that reaches the node itself cannot pick its address.
    with from_peer(server, DIRECT, "203.0.113.11") as http:
        assert token_login(http, "spoofing-user", "wrong-password") == 401
    forwarded = audit_events(server, actor="audited-user")
    assert [event["client_ip"] for event in forwarded] == ["203.0.113.10"]
    spoofed = audit_events(server, actor="spoofing-user")
    assert [event["client_ip"] for event in spoofed] == [DIRECT]


def test_the_allowlist_judges_the_forwarded_client(server: RunningServer) -> None:
    with from_peer(server, PROXY, "198.51.100.7") as http:
        refused = http.get("/v2/")
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["detail"] == {"client_ip": "198.51.100.7"}
    with from_peer(server, PROXY, "203.0.113.8") as http:
        assert http.get("/v2/").status_code == 401  # allowed through, then asked to log in
    # The proxy's own address is allowed, but a client naming it cannot borrow it... and a direct
    # client naming an allowed address is judged by its own.
    with from_peer(server, DIRECT, "198.51.100.7") as http:
        assert http.get("/v2/").status_code == 401


def test_the_token_realm_follows_the_proxy_scheme_and_host(server: RunningServer) -> None:
    with from_peer(
        server, PROXY, "203.0.113.20", X_Forwarded_Proto="https", X_Forwarded_Host="registry.example.com"
    ) as http:
        challenge = http.get("/v2/").headers["www-authenticate"]
    assert 'realm="https://registry.example.com/token"' in challenge
    with from_peer(server, DIRECT, None, X_Forwarded_Proto="https", X_Forwarded_Host="evil.example") as http:
        direct = http.get("/v2/").headers["www-authenticate"]
    assert f'realm="{server.url}/token"' in direct


def test_the_access_log_shows_the_client_and_the_proxy(server: RunningServer) -> None:
    with from_peer(server, PROXY, "203.0.113.30") as http:
        request_id = http.get("/v2/").headers["x-request-id"]
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        lines = [line for line in server.log().splitlines() if request_id in line]
        time.sleep(0.1)
    assert len(lines) == 1, server.log()[-2000:]
    assert "client=203.0.113.30 " in lines[0]
    assert "proxy=127.0.0.1:" in lines[0]
