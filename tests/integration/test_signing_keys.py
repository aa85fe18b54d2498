"""Rotating and retiring the token signing keys on a real `dockyard serve`, through the management
API and the CLI, as an operator does it: old tokens keep working after a rotation, new ones carry
the new `kid`, and retiring the old key revokes what it signed.

When a retirement takes effect: at once on the worker that handled it (its key ring reloads and its
/v2 gate forgets verified tokens), and on other workers once their key ring refreshes (60 s) and
their gate's remembered verification expires (up to 60 s more). The single-worker tests check the
first; `test_retirement_reaches_every_worker_within_two_minutes` measures the second.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.support.cli import run_dockyard
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN_PASSWORD = "keys-admin-password-1"
AUTH_ON: dict[str, Any] = {"auth": {"enabled": True}, "http": {"workers": 1}}
KEYS = "/api/v1/system/signing-keys"
ADMIN = ("admin", ADMIN_PASSWORD)
# What one worker may go on accepting a retired key's tokens for: key ring refresh + gate cache.
CROSS_WORKER_BOUND = 60 + 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("keys-server"), AUTH_ON, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    yield running
    running.stop()


def token_for(server: RunningServer, auth: tuple[str, str] = ADMIN) -> str:
    answer = httpx.get(
        f"{server.url}/token",
        params={"service": "dockyard", "scope": "registry:catalog:*"},
        auth=auth,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def v2_status(server: RunningServer, token: str) -> int:
    # A new connection each time: with several workers, any of them may answer.
    return httpx.get(
        f"{server.url}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
    ).status_code


def keys_by_kid(server: RunningServer) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{server.url}{KEYS}", auth=ADMIN, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert "PRIVATE" not in answer.text and "PUBLIC" not in answer.text  # never key material
    return {key["kid"]: key for key in answer.json()}


def rotate(server: RunningServer) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}{KEYS}/rotate", auth=ADMIN, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    return key


def retire(server: RunningServer, kid: str, auth: tuple[str, str] = ADMIN) -> httpx.Response:
    return httpx.post(f"{server.url}{KEYS}/{kid}/retire", auth=auth, timeout=HTTP_TIMEOUT)


def test_rotation_keeps_old_tokens_and_retiring_the_old_key_revokes_them(server: RunningServer) -> None:
    old_token = token_for(server)
    old_kid = kid_of(old_token)
    assert v2_status(server, old_token) == 200
    assert keys_by_kid(server)[old_kid]["status"] == "signing"

    new_key = rotate(server)

    new_kid = new_key["kid"]
    assert new_kid != old_kid and new_key["status"] == "signing"
    keys = keys_by_kid(server)
    assert (keys[old_kid]["status"], keys[new_kid]["status"]) == ("verifying", "signing")
    assert v2_status(server, old_token) == 200  # still good after the rotation
    new_token = token_for(server)
    assert kid_of(new_token) == new_kid
    assert v2_status(server, new_token) == 200

    retired = retire(server, old_kid)

    assert retired.status_code == 200, retired.text
    assert retired.json()["status"] == "retired" and retired.json()["retired_at"]
    refused = httpx.get(
        f"{server.url}/v2/", headers={"Authorization": f"Bearer {old_token}"}, timeout=HTTP_TIMEOUT
    )
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert v2_status(server, new_token) == 200
    assert kid_of(token_for(server)) == new_kid


def test_the_signing_key_cannot_be_retired_and_unknown_or_retired_keys_are_refused(
    server: RunningServer,
) -> None:
    token_for(server)  # the first token creates the first key
    signing = next(k for k, key in keys_by_kid(server).items() if key["status"] == "signing")

    refused = retire(server, signing)
    assert refused.status_code == 409
    assert "rotate first" in refused.json()["errors"][0]["message"]
    assert keys_by_kid(server)[signing]["status"] == "signing"

    assert retire(server, "AAAA:BBBB:CCCC").status_code == 404

    rotate(server)
    assert retire(server, signing).status_code == 200
    again = retire(server, signing)
    assert again.status_code == 409 and "already retired" in again.json()["errors"][0]["message"]


def test_rotations_and_retirements_are_audited(server: RunningServer) -> None:
    token_for(server)  # a signing key exists (on a fresh server the first token makes it) to be rotated out
    new_kid = rotate(server)["kid"]
    old_kid = next(k for k, key in keys_by_kid(server).items() if key["status"] == "verifying")
    assert retire(server, old_kid).status_code == 200
    assert retire(server, new_kid).status_code == 409

    wanted = {
        ("create", "ok", "rotate", new_kid),
        ("update", "ok", "retire", old_kid),
        ("update", "failed", "retire", new_kid),
    }
    found: set[tuple[Any, ...]] = set()
    deadline = time.monotonic() + 10  # the audit log writes in batches, in the background
    while time.monotonic() < deadline and not wanted <= found:
        events = httpx.get(
            f"{server.url}/api/v1/audit",
            params={"resource_type": "settings", "page_size": 100},
            auth=ADMIN,
            timeout=HTTP_TIMEOUT,
        ).json()
        found = {
            (e["action"], e["result"], (e["detail"] or {}).get("operation"), (e["detail"] or {}).get("kid"))
            for e in events
            if e["actor"] == "admin" and e["resource_name"] == "signing-keys"
        }
        time.sleep(0.2)
    assert wanted <= found


def test_only_system_administrators_manage_keys(server: RunningServer) -> None:
    user = ("keys-dev", "keys-dev-password-1")
    created = httpx.post(
        f"{server.url}/api/v1/users",
        json={"username": user[0], "password": user[1]},
        auth=ADMIN,
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    token_for(server)
    some_kid = next(iter(keys_by_kid(server)))
    before = keys_by_kid(server)

    assert httpx.get(f"{server.url}{KEYS}", auth=user, timeout=HTTP_TIMEOUT).status_code == 403
    assert httpx.post(f"{server.url}{KEYS}/rotate", auth=user, timeout=HTTP_TIMEOUT).status_code == 403
    assert retire(server, some_kid, auth=user).status_code == 403
    assert httpx.get(f"{server.url}{KEYS}", timeout=HTTP_TIMEOUT).status_code == 401
    assert httpx.post(f"{server.url}{KEYS}/rotate", timeout=HTTP_TIMEOUT).status_code == 401
    assert keys_by_kid(server) == before  # nothing changed


def test_cli_lists_rotates_and_retires(server: RunningServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "DOCKYARD_SERVER")}
    env.update(HOME=str(tmp_path), COLUMNS="200")

    def dockyard(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_dockyard(*args, input=stdin, env=env)

    login = dockyard("login", server.url, "-u", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    old_token = token_for(server)

    rotated = dockyard("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = kid_of(token_for(server))
    assert f"New signing key {new_kid}." in rotated.stdout

    listed = dockyard("keys", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if new_kid in row)
    assert "signing" in line

    refused = dockyard("keys", "retire", new_kid)
    assert refused.returncode == 1 and "rotate first" in refused.stderr

    old_kid = kid_of(old_token)
    retired = dockyard("keys", "retire", old_kid, "--json")
    assert retired.returncode == 0, retired.stderr
    assert '"status": "retired"' in retired.stdout
    assert v2_status(server, old_token) == 401


def test_retirement_reaches_every_worker_within_two_minutes(tmp_path: Path) -> None:
    """Two workers: the one that did not handle the retirement keeps its parsed keys and its
    remembered verifications for a while. Measured here: refused by every worker within the bound."""
    config = {"auth": {"enabled": True}, "http": {"workers": 2}}
    server = start_server(tmp_path, config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        old_token = token_for(server)
        for _ in range(20):  # both workers verify (and remember) the token
            assert v2_status(server, old_token) == 200
        rotate(server)
        assert retire(server, kid_of(old_token)).status_code == 200
        retired_at = time.monotonic()

        consecutive_refusals = 0
        while consecutive_refusals < 20:  # 20 in a row: each worker has answered at least once
            assert time.monotonic() - retired_at < CROSS_WORKER_BOUND + 5, "a retired key's token still works"
            refused = v2_status(server, old_token) == 401
            consecutive_refusals = consecutive_refusals + 1 if refused else 0
            if not refused:
                time.sleep(1)
        print(f"retired key refused by every worker after {time.monotonic() - retired_at:.0f} s")
    finally:
        server.stop()
