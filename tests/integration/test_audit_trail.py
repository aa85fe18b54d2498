"""The registry's own traffic reaches the audit log: token issues, failed logins, pushes, pulls,
deletes and denied requests, each with who, from where and the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.ociclient import OCIClient
from tests.support.server import RunningServer

ADMIN = ("admin", "audit-trail-Passw0rd")


def _token(server: RunningServer, scope: str, auth: tuple[str, str] | None) -> httpx.Response:
    return httpx.get(f"{server.url}/token", params={"service": "dockyard", "scope": scope}, auth=auth)


def _events(server: RunningServer, **filters: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:  # events are written in batches, about once a second
        response = httpx.get(f"{server.url}/api/v1/audit", params={"page_size": "100", **filters}, auth=ADMIN)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


def test_tokens_pushes_pulls_deletes_and_denials_are_audited(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server({"auth": {"enabled": True}}, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    scope = "repository:team/app:pull,push,delete"
    token = _token(server, scope, ADMIN).json()["token"]
    assert _token(server, scope, ("admin", "wrong-password")).status_code == 401
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        pushed = OCIClient(http).push_image("team/app", "1.0")
        assert http.get(f"/v2/team/app/manifests/{pushed.digest}").status_code == 200
        assert http.delete("/v2/team/app/manifests/1.0").status_code == 202
    # The bare challenge handshake is not a denial; a request with a token that lacks the scope is.
    assert httpx.get(f"{server.url}/v2/team/app/manifests/{pushed.digest}").status_code == 401
    anonymous = _token(server, "repository:team/app:pull", None).json()["token"]
    headers = {"Authorization": f"Bearer {anonymous}"}
    assert (
        httpx.get(f"{server.url}/v2/team/app/manifests/{pushed.digest}", headers=headers).status_code == 401
    )

    issued = _events(server, action="token_issued")
    assert any(
        e["actor"] == "admin"
        and e["result"] == "ok"
        and "repository:team/app:delete,pull,push" in e["detail"]["scopes"]
        for e in issued
    ), issued
    failed = _events(server, action="login_failed")
    assert [e["actor"] for e in failed] == ["admin"] and failed[0]["result"] == "denied"
    assert "wrong-password" not in str(failed)
    push = _events(server, action="push")
    assert {e["resource_name"] for e in push} == {"team/app:1.0"}
    assert all(e["actor"] == "admin" and e["client_ip"] == "127.0.0.1" for e in push)
    assert {e["resource_name"] for e in _events(server, action="pull")} == {f"team/app@{pushed.digest}"}
    assert {e["resource_name"] for e in _events(server, action="delete")} == {"team/app:1.0"}
    denied = _events(server, action="access_denied")
    assert len(denied) == 1 and denied[0]["actor_kind"] == "anonymous" and denied[0]["result"] == "denied"
