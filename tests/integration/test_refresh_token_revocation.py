"""A refresh token (30 days, `POST /token` with `access_type=offline`) dies with the credential it
came from, on every worker at once: a robot's secret refreshed, a user's password changed or reset by
an administrator, a personal access token revoked, the account disabled or deleted. A real
`dockyard serve` with 2 workers; each refusal is checked on fresh connections, so both workers answer.

A refresh token names its credential (a fingerprint of the stored hash, or the personal token's id)
and each use checks it in the database: nothing is cached, so there is no delay to wait for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.accounts import Accounts, offline_login, refresh, statuses
from tests.support.server import RunningServer, start_server

ADMIN = ("admin", "refresh-revocation-admin-password-1")
REPEATS = 10  # refresh grants per check, each on a fresh connection: both workers answer some
CONFIG: dict[str, Any] = {
    "auth": {"enabled": True, "login_limit": {"max_failures": 100_000}},
    "http": {"workers": 2},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("refresh-revocation"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def accounts(server: RunningServer) -> Accounts:
    return Accounts(server, ADMIN)


def refresh_statuses(server: RunningServer, refresh_token: str) -> list[int]:
    return statuses(lambda: refresh(server, refresh_token), REPEATS)


def works(server: RunningServer, refresh_token: str) -> None:
    assert refresh_statuses(server, refresh_token) == [200] * REPEATS


def refused(server: RunningServer, refresh_token: str) -> None:
    answers = [refresh(server, refresh_token) for _ in range(REPEATS)]
    assert [a.status_code for a in answers] == [400] * REPEATS
    assert {a.json()["error"] for a in answers} == {"invalid_grant"}


def test_a_refreshed_robot_secret_kills_the_old_secret_s_refresh_token(
    server: RunningServer, accounts: Accounts
) -> None:
    project = accounts.project()
    robot = accounts.robot(project)
    old = offline_login(server, robot, f"repository:{project}/app:pull")
    works(server, old)
    short = robot[0].rpartition("+")[2]
    with accounts.api() as http:
        renewed = http.post(f"/projects/{project}/robots/{short}/secret")
    assert renewed.status_code == 200, renewed.text
    refused(server, old)
    new = offline_login(server, (robot[0], renewed.json()["secret"]))
    works(server, new)  # the new secret's refresh token works


def test_a_changed_password_kills_the_old_password_s_refresh_token(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    old = offline_login(server, user)
    works(server, old)
    new_password = "revocation-user-password-2"
    with accounts.api(auth=user) as http:
        changed = http.put("/me/password", json={"current_password": user[1], "new_password": new_password})
    assert changed.status_code == 204, changed.text
    refused(server, old)
    works(server, offline_login(server, (user[0], new_password)))


def test_a_password_reset_by_an_administrator_kills_the_refresh_token(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    old = offline_login(server, user)
    works(server, old)
    with accounts.api() as http:
        reset = http.put(f"/users/{user[0]}/password", json={"password": "reset-by-the-admin-1"})
    assert reset.status_code == 204, reset.text
    refused(server, old)


def test_a_revoked_personal_token_kills_its_refresh_token_and_only_its_own(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    first_id, first = accounts.personal_token(user)
    _, second = accounts.personal_token(user)
    from_first = offline_login(server, (user[0], first))
    from_second = offline_login(server, (user[0], second))
    from_password = offline_login(server, user)
    with accounts.api(auth=user) as http:
        assert http.delete(f"/me/tokens/{first_id}").status_code == 204
    refused(server, from_first)
    works(server, from_second)
    works(server, from_password)


def test_a_personal_token_s_refresh_token_outlives_a_password_change(
    server: RunningServer, accounts: Accounts
) -> None:
    """Each refresh token is exactly as alive as its own credential: the personal token still works
    after the password changed (as on GitHub), so the refresh token it gave does too."""
    user = accounts.user()
    _, secret = accounts.personal_token(user)
    from_token = offline_login(server, (user[0], secret))
    with accounts.api() as http:
        assert (
            http.put(f"/users/{user[0]}/password", json={"password": "reset-by-the-admin-2"}).status_code
            == 204
        )
    works(server, from_token)


def test_a_disabled_or_deleted_account_kills_every_refresh_token(
    server: RunningServer, accounts: Accounts
) -> None:
    disabled, deleted = accounts.user(), accounts.user()
    project = accounts.project()
    robot = accounts.robot(project)
    tokens = {
        name: offline_login(server, creds) for name, creds in (("d", disabled), ("x", deleted), ("r", robot))
    }
    with accounts.api() as http:
        assert http.patch(f"/users/{disabled[0]}", json={"disabled": True}).status_code == 200
        assert http.delete(f"/users/{deleted[0]}").status_code == 204
        assert http.delete(f"/projects/{project}/robots/{robot[0].rpartition('+')[2]}").status_code == 204
    for token in tokens.values():
        refused(server, token)


def test_a_user_re_created_under_the_same_name_does_not_inherit_a_refresh_token(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    old = offline_login(server, user)
    with accounts.api() as http:
        assert http.delete(f"/users/{user[0]}").status_code == 204
        again = http.post("/users", json={"username": user[0], "password": user[1]})
    assert again.status_code == 201, again.text
    refused(server, old)
