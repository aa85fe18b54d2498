"""The registry's own traffic reaches the audit log: token issues, failed logins, pushes, deletes and
denied requests, each with who, from where and the result; pulls as counts per (hour, manifest, actor),
or not at all with audit.pulls: off."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import yaml

from tests.support.ociclient import OCIClient
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "audit-trail-Passw0rd")


def _token(server: RunningServer, scope: str, auth: tuple[str, str] | None) -> httpx.Response:
    return httpx.get(
        f"{server.url}/token", params={"service": "dockyard", "scope": scope}, auth=auth, timeout=HTTP_TIMEOUT
    )


def _events(server: RunningServer, **filters: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:  # events are written in batches, about once a second
        response = httpx.get(
            f"{server.url}/api/v1/audit",
            params={"page_size": "100", **filters},
            auth=ADMIN,
            timeout=HTTP_TIMEOUT,
        )
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
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
    ) as http:
        pushed = OCIClient(http).push_image("team/app", "1.0")
        assert http.get(f"/v2/team/app/manifests/{pushed.digest}").status_code == 200
        assert http.delete("/v2/team/app/manifests/1.0").status_code == 202
    # The bare challenge handshake is not a denial; a request with a token that lacks the scope is.
    assert (
        httpx.get(f"{server.url}/v2/team/app/manifests/{pushed.digest}", timeout=HTTP_TIMEOUT).status_code
        == 401
    )
    anonymous = _token(server, "repository:team/app:pull", None).json()["token"]
    headers = {"Authorization": f"Bearer {anonymous}"}
    assert (
        httpx.get(
            f"{server.url}/v2/team/app/manifests/{pushed.digest}", headers=headers, timeout=HTTP_TIMEOUT
        ).status_code
        == 401
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
    (pull,) = _events(server, action="pull")  # counted: it arrives with the counter's next batch
    assert (pull["resource_name"], pull["actor"], pull["count"], pull["hourly"]) == (
        f"team/app@{pushed.digest}",
        "admin",
        1,
        True,
    )
    assert {e["resource_name"] for e in _events(server, action="delete")} == {"team/app:1.0"}
    denied = _events(server, action="access_denied")
    assert len(denied) == 1 and denied[0]["actor_kind"] == "anonymous" and denied[0]["result"] == "denied"


def _restarted(server: RunningServer, make_server: Callable[..., RunningServer]) -> RunningServer:
    """The server stopped (which writes what its processes still hold) and started again on its data."""
    server.stop()
    config = yaml.safe_load(server.config_path.read_text())
    kept = {key: config[key] for key in ("datadir", "auth", "audit") if key in config}
    return make_server(kept, env=server.env)


def _pull_and_push(server: RunningServer, pulls: int) -> str:
    """Push team/app:1.0 as admin, pull it `pulls` times (half by tag, half by digest), delete the tag."""
    token = _token(server, "repository:team/app:pull,push,delete", ADMIN).json()["token"]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
    ) as http:
        pushed = OCIClient(http).push_image("team/app", "1.0")
        for number in range(pulls):
            reference = "1.0" if number % 2 else pushed.digest
            assert http.get(f"/v2/team/app/manifests/{reference}").status_code == 200
        assert http.delete("/v2/team/app/manifests/1.0").status_code == 202
    return pushed.digest


def test_pulls_are_counted_per_hour_not_recorded_one_by_one(
    make_server: Callable[..., RunningServer],
) -> None:
    """Before: each manifest GET wrote a row of its own (~290 bytes, and a database write per read)."""
    server = make_server({"auth": {"enabled": True}}, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    digest = _pull_and_push(server, pulls=20)
    server = _restarted(server, make_server)

    pulls = _events(server, action="pull")
    hours = {e["occurred_at"] for e in pulls}
    assert len(pulls) == len(hours) <= 2, pulls  # one row per hour (2 if the clock passed one meanwhile)
    assert sum(e["count"] for e in pulls) == 20
    assert all(e["hourly"] and e["id"] is None for e in pulls)
    assert {(e["resource_name"], e["actor"], e["actor_kind"], e["client_ip"]) for e in pulls} == {
        (f"team/app@{digest}", "admin", "user", "127.0.0.1")
    }
    assert all(datetime.fromisoformat(e["occurred_at"]).minute == 0 for e in pulls)
    # Pushes and deletes keep a row each, with their detail.
    (push,) = _events(server, action="push")
    (delete,) = _events(server, action="delete")
    assert (push["count"], push["hourly"], push["detail"]["method"]) == (1, False, "PUT")
    assert (delete["count"], delete["hourly"], delete["resource_name"]) == (1, False, "team/app:1.0")


def test_pulls_are_not_audited_when_turned_off(make_server: Callable[..., RunningServer]) -> None:
    config = {"auth": {"enabled": True}, "audit": {"pulls": "off"}}
    server = make_server(config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    _pull_and_push(server, pulls=3)
    anonymous = _token(server, "repository:team/app:pull", None).json()["token"]
    refused = httpx.get(
        f"{server.url}/v2/team/app/manifests/1.0",
        headers={"Authorization": f"Bearer {anonymous}"},
        timeout=HTTP_TIMEOUT,
    )
    assert refused.status_code == 401
    server = _restarted(server, make_server)

    assert [e["action"] for e in _events(server, action="push")] == ["push"]
    assert [e["action"] for e in _events(server, action="delete")] == ["delete"]
    assert [e["actor_kind"] for e in _events(server, action="access_denied")] == ["anonymous"]
    everything = _events(server)
    assert "pull" not in {e["action"] for e in everything}
