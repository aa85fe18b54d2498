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
from collections.abc import Callable, Iterator
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


# --- a change of who may do what, at once ----------------------------------------------------------
# Only writes that change who may do what make the workers forget (api/auth_changes.py): each case
# has a login remembered on every worker, makes one such change through the API (a fresh connection:
# any worker), and the very next round of calls must be refused everywhere, without waiting.
Revoke = Callable[[], httpx.Response]
Case = tuple[tuple[str, str], str, Revoke]  # credentials, the path they ask for, the change


def pull_path(project: str) -> str:
    return f"/v2/{project}/app/tags/list"  # 404 when let through (nothing pushed), else 401 or 403


def new_project(http: httpx.Client, public: bool = False) -> str:
    name = f"who-{next(_numbers)}"
    made = http.post("/projects", json={"name": name, "public": public})
    assert made.status_code == 201, made.text
    return name


def add_member(http: httpx.Client, project: str, **member: str) -> int:
    added = http.post(f"/projects/{project}/members", json={"role": "developer", **member})
    assert added.status_code == 201, added.text
    return int(added.json()["id"])


def member_removed(http: httpx.Client, server: RunningServer) -> Case:
    user, project = new_user(server), new_project(http)
    member = add_member(http, project, user=user[0])
    return user, pull_path(project), lambda: http.delete(f"/projects/{project}/members/{member}")


def group_change(http: httpx.Client, server: RunningServer, whole_group: bool) -> Case:
    """The user may pull as a member of a group that is a project member: the user leaves the group,
    or the group is deleted."""
    user, project = new_user(server), new_project(http)
    group = http.post("/groups", json={"name": f"team-{next(_numbers)}"}).json()
    assert http.put(f"/groups/{group['id']}/members/{user[0]}").status_code == 200
    add_member(http, project, group=group["name"])
    path = f"/groups/{group['id']}" if whole_group else f"/groups/{group['id']}/members/{user[0]}"
    return user, pull_path(project), lambda: http.delete(path)


def robot_permission_moved(http: httpx.Client, server: RunningServer) -> Case:
    project, other, name = new_project(http), new_project(http), f"bot{next(_numbers)}"

    def grants(where: str) -> dict[str, Any]:
        return {"permissions": [{"project": where, "actions": ["pull"]}]}

    made = http.post("/robots", json={"name": name, **grants(project)})
    assert made.status_code == 201, made.text
    robot = (made.json()["name"], made.json()["secret"])
    return robot, pull_path(project), lambda: http.patch(f"/robots/{name}", json=grants(other))


def project_robot_disabled(http: httpx.Client, server: RunningServer) -> Case:
    project = new_project(http)
    made = http.post(f"/projects/{project}/robots", json={"name": "ci", "actions": ["pull"]})
    assert made.status_code == 201, made.text
    robot = (made.json()["name"], made.json()["secret"])
    path = f"/projects/{project}/robots/ci"
    return robot, pull_path(project), lambda: http.patch(path, json={"disabled": True})


def made_private(http: httpx.Client, server: RunningServer) -> Case:
    outsider, project = new_user(server), new_project(http, public=True)
    return outsider, pull_path(project), lambda: http.patch(f"/projects/{project}", json={"public": False})


def project_made_again(http: httpx.Client, server: RunningServer) -> Case:
    """Deleted and made again under its name: the old project's member is nobody in the new one."""
    user, project = new_user(server), new_project(http)
    add_member(http, project, user=user[0])

    def again() -> httpx.Response:
        assert http.delete(f"/projects/{project}").status_code == 204
        return http.post("/projects", json={"name": project})

    return user, pull_path(project), again


def admin_demoted(http: httpx.Client, server: RunningServer) -> Case:
    user = new_user(server)
    assert http.patch(f"/users/{user[0]}", json={"admin": True}).status_code == 200
    return user, "/api/v1/users", lambda: http.patch(f"/users/{user[0]}", json={"admin": False})


CHANGES: dict[str, Callable[[httpx.Client, RunningServer], Case]] = {
    "member removed": member_removed,
    "left the group": lambda http, server: group_change(http, server, whole_group=False),
    "group deleted": lambda http, server: group_change(http, server, whole_group=True),
    "robot's permission moved": robot_permission_moved,
    "project robot disabled": project_robot_disabled,
    "project made private": made_private,
    "project deleted and made again": project_made_again,
    "administrator demoted": admin_demoted,
}
ALLOWED, REFUSED = {200, 404}, {401, 403}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_of_who_may_do_what_refuses_remembered_logins_on_every_worker_at_once(
    server: RunningServer, change: str
) -> None:
    with admin(server) as http:
        credentials, path, revoke = CHANGES[change](http, server)
        before = [ask(server, credentials, path) for _ in range(REPEATS)]
        assert set(before) <= ALLOWED, f"not let through before the change: {before}"
        done = revoke()
        assert done.status_code in (200, 201, 204), done.text
    after = [ask(server, credentials, path) for _ in range(REPEATS)]
    assert set(after) <= REFUSED, f"let through after the change, by a worker that remembered: {after}"


def ask(server: RunningServer, credentials: tuple[str, str], path: str) -> int:
    """One call on a fresh connection (any worker)."""
    return httpx.get(f"{server.url}{path}", auth=credentials, timeout=HTTP_TIMEOUT).status_code
