"""Remembered Basic logins on the management API, against a real `dockyard serve` with 2 workers.

Scripts call /api/v1 with Basic on every request; each worker remembers a success for `basic_ttl`
seconds (30) instead of running argon2id again (that it hashes once is counted in
tests/unit/api/management/test_basic_logins.py). What a user checks here: a revocation made through
the API (password changed, user disabled, robot deleted) refuses the old credentials on every worker
within the change feed's delay, long before the TTL; a wrong password is never taken for a
remembered right one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "api-basic-admin-password-1")
WITHIN_SECONDS = 5.0  # the feed's delay on a loaded machine; the remembered login lasts 30 s
REPEATS = 12  # requests per check on fresh connections: enough for both workers to answer some
CONFIG: dict[str, Any] = {
    # Refused attempts are many here; the login limit is not what these tests look at.
    "auth": {"enabled": True, "login_limit": {"max_failures": 100_000}},
    "http": {"workers": 2},
}
_numbers = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("api-basic"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


def admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT)


def new_user(server: RunningServer) -> tuple[str, str]:
    user = (f"scripted-{next(_numbers)}", "scripted-user-password-1")
    with admin(server) as http:
        made = http.post("/users", json={"username": user[0], "password": user[1]})
    assert made.status_code == 201, made.text
    return user


def me_statuses(server: RunningServer, credentials: tuple[str, str], repeats: int = REPEATS) -> list[int]:
    """GET /api/v1/me, each on a fresh connection (so any worker may answer)."""
    return [
        httpx.get(f"{server.url}/api/v1/me", auth=credentials, timeout=HTTP_TIMEOUT).status_code
        for _ in range(repeats)
    ]


def remembered_by_every_worker(server: RunningServer, credentials: tuple[str, str]) -> None:
    assert me_statuses(server, credentials) == [200] * REPEATS


def refused_everywhere_within_the_feed_delay(server: RunningServer, credentials: tuple[str, str]) -> None:
    """Polls until a round of calls is all 401, for at most WITHIN_SECONDS: a cache that ignored the
    revocation would go on answering 200 for its 30 s TTL."""
    deadline = time.monotonic() + WITHIN_SECONDS
    statuses = me_statuses(server, credentials)
    while set(statuses) != {401}:
        assert time.monotonic() < deadline, f"old credentials still accepted: {statuses}"
        time.sleep(0.1)
        statuses = me_statuses(server, credentials)


def test_a_changed_password_refuses_the_old_one_on_every_worker(server: RunningServer) -> None:
    user = new_user(server)
    remembered_by_every_worker(server, user)
    new_password = "scripted-user-password-2"
    changed = httpx.put(
        f"{server.url}/api/v1/me/password",
        json={"current_password": user[1], "new_password": new_password},
        auth=user,
        timeout=HTTP_TIMEOUT,
    )
    assert changed.status_code == 204, changed.text
    refused_everywhere_within_the_feed_delay(server, user)
    assert me_statuses(server, (user[0], new_password), repeats=2) == [200, 200]


def test_a_disabled_user_is_refused_on_every_worker(server: RunningServer) -> None:
    user = new_user(server)
    remembered_by_every_worker(server, user)
    with admin(server) as http:
        disabled = http.patch(f"/users/{user[0]}", json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    refused_everywhere_within_the_feed_delay(server, user)


def test_a_deleted_robot_is_refused_on_every_worker(server: RunningServer) -> None:
    project = f"scripts-{next(_numbers)}"
    with admin(server) as http:
        assert http.post("/projects", json={"name": project}).status_code == 201
        made = http.post(f"/projects/{project}/robots", json={"name": "ci", "actions": ["pull"]})
        assert made.status_code == 201, made.text
        robot = (made.json()["name"], made.json()["secret"])
        remembered_by_every_worker(server, robot)
        assert http.delete(f"/projects/{project}/robots/ci").status_code == 204
    refused_everywhere_within_the_feed_delay(server, robot)


def test_a_wrong_password_is_refused_right_after_the_right_one_succeeded(server: RunningServer) -> None:
    user = new_user(server)
    remembered_by_every_worker(server, user)
    assert me_statuses(server, (user[0], "not-the-password-1")) == [401] * REPEATS
    assert me_statuses(server, (user[0], user[1] + "x"), repeats=2) == [401, 401]
    remembered_by_every_worker(server, user)  # the right one is still served
