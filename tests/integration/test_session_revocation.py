"""Management sessions (the 8 h cookie from POST /api/v1/login) end when they should, on every worker:
at logout (a kept copy of the cookie included), when the password they were opened with is changed
or reset (except the session that changed it), when the personal access token they were opened with
is revoked, when the account is disabled. And a personal access token cannot make more of itself.
A real `dockyard serve` with 2 workers; each check is made on fresh connections, so both answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.accounts import Accounts, statuses
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "session-revocation-admin-password-1")
REPEATS = 10
CONFIG: dict[str, Any] = {
    "auth": {"enabled": True, "login_limit": {"max_failures": 100_000}},
    "http": {"workers": 2},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("session-revocation"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def accounts(server: RunningServer) -> Accounts:
    return Accounts(server, ADMIN)


class Browser:
    """A session as a browser holds it: the cookie and the CSRF token from POST /login."""

    def __init__(self, server: RunningServer, username: str, secret: str) -> None:
        self.server = server
        answer = httpx.post(
            f"{server.url}/api/v1/login",
            json={"username": username, "password": secret},
            timeout=HTTP_TIMEOUT,
        )
        assert answer.status_code == 200, answer.text
        self.cookie = answer.cookies["dockyard_session"]
        self.csrf = answer.json()["csrf_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """On a fresh connection (any worker), with only the cookie: as a copy of it would be sent."""
        headers = {"Cookie": f"dockyard_session={self.cookie}", "X-CSRF-Token": self.csrf}
        return httpx.request(
            method, f"{self.server.url}/api/v1{path}", headers=headers, timeout=HTTP_TIMEOUT, **kwargs
        )

    def me(self) -> list[int]:
        return statuses(lambda: self.request("GET", "/me"), REPEATS)


def test_logout_ends_the_session_for_every_copy_of_the_cookie(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    browser, other = Browser(server, *user), Browser(server, *user)
    assert browser.me() == [200] * REPEATS
    assert browser.request("POST", "/logout").status_code == 204
    assert browser.me() == [401] * REPEATS
    assert other.me() == [200] * REPEATS  # another session of the same user goes on


def test_a_password_change_ends_every_other_session_opened_with_it(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    changing, elsewhere = Browser(server, *user), Browser(server, *user)
    _, token = accounts.personal_token(user)
    with_token = Browser(server, user[0], token)
    new_password = "session-user-password-2"
    body = {"current_password": user[1], "new_password": new_password}
    assert changing.request("PUT", "/me/password", json=body).status_code == 204
    assert elsewhere.me() == [401] * REPEATS
    assert changing.me() == [200] * REPEATS  # the session that changed it stays
    assert with_token.me() == [200] * REPEATS  # opened with a token, not with the password
    assert Browser(server, user[0], new_password).me() == [200] * REPEATS


def test_a_password_reset_by_an_administrator_ends_the_user_s_sessions(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    browser = Browser(server, *user)
    admin_session = Browser(server, *ADMIN)
    reset = admin_session.request("PUT", f"/users/{user[0]}/password", json={"password": "reset-by-admin-1"})
    assert reset.status_code == 204, reset.text
    assert browser.me() == [401] * REPEATS
    assert admin_session.me() == [200] * REPEATS


def test_revoking_the_personal_token_a_session_was_opened_with_ends_it(
    server: RunningServer, accounts: Accounts
) -> None:
    user = accounts.user()
    token_id, token = accounts.personal_token(user)
    browser = Browser(server, user[0], token)
    with_password = Browser(server, *user)
    assert browser.me() == [200] * REPEATS
    assert with_password.request("DELETE", f"/me/tokens/{token_id}").status_code == 204
    assert browser.me() == [401] * REPEATS
    assert with_password.me() == [200] * REPEATS


def test_disabling_the_account_ends_its_sessions(server: RunningServer, accounts: Accounts) -> None:
    user = accounts.user()
    browser = Browser(server, *user)
    with accounts.api() as http:
        assert http.patch(f"/users/{user[0]}", json={"disabled": True}).status_code == 200
    assert browser.me() == [401] * REPEATS


def test_a_personal_token_cannot_make_personal_tokens(server: RunningServer, accounts: Accounts) -> None:
    """A leaked token, once revoked, must not have left tokens of its own behind (on GitHub too a
    token cannot make tokens). Neither with Basic nor through a session opened with it."""
    user = accounts.user()
    _, token = accounts.personal_token(user)
    with accounts.api(auth=(user[0], token)) as http:
        refused = http.post("/me/tokens", json={"name": "minted"})
        assert refused.status_code == 403, refused.text
        assert "password" in refused.json()["errors"][0]["message"]
        assert http.get("/me/tokens").status_code == 200  # it may still list them
    refused = Browser(server, user[0], token).request("POST", "/me/tokens", json={"name": "minted"})
    assert refused.status_code == 403, refused.text
    made = Browser(server, *user).request("POST", "/me/tokens", json={"name": "with the password"})
    assert made.status_code == 201, made.text
    with accounts.api(auth=user) as http:
        names = [t["name"] for t in http.get("/me/tokens").json()]
    assert "minted" not in names and "with the password" in names
