"""A bearer token (5 minutes) stops working when its principal loses its standing, not when it expires:
the user disabled, the robot deleted, the membership removed, the project made private, the password
changed, the robot's secret refreshed, the personal token it was got with revoked. A real `dockyard
serve` with 2 workers: each token is first used on both workers (so each has verified it and
remembers its answer), then the change is made through the management API and every worker must
refuse the token within the change feed's delay (polled for WITHIN_SECONDS; the token would live 5
minutes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.accounts import Accounts, bearer_token, statuses, until
from tests.support.ociclient import describe
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "bearer-standing-admin-password-1")
WITHIN_SECONDS = 5.0  # the change feed's delay on a loaded machine; the tokens live 5 minutes
REPEATS = 10  # requests per check, each on a fresh connection: both workers answer some
CONFIG: dict[str, Any] = {
    "auth": {"enabled": True, "login_limit": {"max_failures": 100_000}},
    "http": {"workers": 2},
}
ALLOWED = 404  # tags of a repository nobody pushed: the gate let the request through


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("bearer-standing"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def accounts(server: RunningServer) -> Accounts:
    return Accounts(server, ADMIN)


class Puller:
    """A client holding one bearer token for pulling `project/app`."""

    def __init__(self, server: RunningServer, project: str, credentials: tuple[str, str] | None) -> None:
        self.server = server
        self.path = f"/v2/{project}/app/tags/list"
        scope = f"repository:{project}/app:pull"
        if credentials is None:
            answer = httpx.get(
                f"{server.url}/token", params={"service": "dockyard", "scope": scope}, timeout=HTTP_TIMEOUT
            )
            self.token = str(answer.json()["token"])
        else:
            self.token = bearer_token(server, credentials, scope)

    def statuses(self) -> list[int]:
        headers = {"Authorization": f"Bearer {self.token}"}
        return statuses(
            lambda: httpx.get(f"{self.server.url}{self.path}", headers=headers, timeout=HTTP_TIMEOUT), REPEATS
        )

    def allowed_everywhere(self) -> None:
        assert self.statuses() == [ALLOWED] * REPEATS

    def refused_everywhere_soon(self, code: str = "UNAUTHORIZED") -> None:
        """401 on every worker within WITHIN_SECONDS: UNAUTHORIZED where the token's account no longer
        stands, DENIED where it does but the access the token carried is gone."""
        until(lambda: self.statuses() == [401] * REPEATS, WITHIN_SECONDS, "the token still works somewhere")
        answer = httpx.get(
            f"{self.server.url}{self.path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=HTTP_TIMEOUT,
        )
        assert answer.json()["errors"][0]["code"] == code, describe(answer)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer ")


def test_a_disabled_user_s_token_stops_working(server: RunningServer, accounts: Accounts) -> None:
    user = accounts.user()
    puller = Puller(server, accounts.project(user), user)
    puller.allowed_everywhere()
    with accounts.api() as http:
        assert http.patch(f"/users/{user[0]}", json={"disabled": True}).status_code == 200
    puller.refused_everywhere_soon()


def test_a_deleted_robot_s_token_stops_working(server: RunningServer, accounts: Accounts) -> None:
    project = accounts.project()
    robot = accounts.robot(project, ("pull",))
    puller = Puller(server, project, robot)
    puller.allowed_everywhere()
    with accounts.api() as http:
        assert http.delete(f"/projects/{project}/robots/{robot[0].rpartition('+')[2]}").status_code == 204
    puller.refused_everywhere_soon()


def test_a_removed_membership_ends_the_access_its_token_carried(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    project = accounts.project(user)
    puller = Puller(server, project, user)
    puller.allowed_everywhere()
    with accounts.api() as http:
        members = http.get(f"/projects/{project}/members").json()
        member = next(m for m in members if m["name"] == user[0])
        assert http.delete(f"/projects/{project}/members/{member['id']}").status_code == 204
    puller.refused_everywhere_soon("DENIED")


def test_an_anonymous_token_ends_when_the_project_is_made_private(
    server: RunningServer, accounts: Accounts
) -> None:
    project = accounts.project()
    with accounts.api() as http:
        assert http.patch(f"/projects/{project}", json={"public": True}).status_code == 200
    puller = Puller(server, project, None)
    puller.allowed_everywhere()
    with accounts.api() as http:
        assert http.patch(f"/projects/{project}", json={"public": False}).status_code == 200
    puller.refused_everywhere_soon()


def test_a_changed_password_ends_the_tokens_the_old_one_got(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    project = accounts.project(user)
    by_password = Puller(server, project, user)
    _, token = accounts.personal_token(user)
    by_token = Puller(server, project, (user[0], token))
    by_password.allowed_everywhere()
    by_token.allowed_everywhere()
    with accounts.api() as http:
        assert (
            http.put(f"/users/{user[0]}/password", json={"password": "reset-by-the-admin-3"}).status_code
            == 204
        )
    by_password.refused_everywhere_soon()
    by_token.allowed_everywhere()  # the personal token still stands, and so does what it got


def test_a_refreshed_robot_secret_ends_the_tokens_the_old_one_got(
    server: RunningServer, accounts: Accounts
) -> None:
    project = accounts.project()
    robot = accounts.robot(project, ("pull",))
    puller = Puller(server, project, robot)
    puller.allowed_everywhere()
    with accounts.api() as http:
        assert (
            http.post(f"/projects/{project}/robots/{robot[0].rpartition('+')[2]}/secret").status_code == 200
        )
    puller.refused_everywhere_soon()


def test_a_revoked_personal_token_ends_the_tokens_it_got(server: RunningServer, accounts: Accounts) -> None:
    user = accounts.user()
    project = accounts.project(user)
    token_id, token = accounts.personal_token(user)
    puller = Puller(server, project, (user[0], token))
    puller.allowed_everywhere()
    with accounts.api(auth=user) as http:
        assert http.delete(f"/me/tokens/{token_id}").status_code == 204
    puller.refused_everywhere_soon()


def test_an_unrelated_change_leaves_tokens_working(server: RunningServer, accounts: Accounts) -> None:
    user = accounts.user()
    puller = Puller(server, accounts.project(user), user)
    puller.allowed_everywhere()
    accounts.user()  # another account made: every worker forgets what it remembered, and asks again
    puller.allowed_everywhere()
