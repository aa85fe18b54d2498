"""Password spraying against a real `dockyard serve`: failed logins are limited per user and per
client address, on every way in that takes a password (GET /token with Basic, the OAuth2 POST form,
Basic on /v2, Basic on /api/v1), and a refusal looks exactly like a wrong password: it never says
whether the user exists or that a limit was hit.

Attempts come from different loopback addresses (127.0.0.x; the server listens on 127.0.0.1) so the
per-user limit and the per-address limit can be told apart. One worker: the limits are per process.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, start_server

ADMIN = ("admin", "limits-admin-password-1")
MAX_FAILURES = 3
CONFIG: dict[str, Any] = {
    "auth": {"enabled": True, "login_limit": {"max_failures": MAX_FAILURES, "window": "1m"}},
    "http": {"workers": 1},
}
LEAKY_WORDS = ("limit", "too many", "locked", "exist", "unknown user", "no such", "retry", "wait")
_addresses = (f"127.0.0.{n}" for n in itertools.count(10))  # a fresh client address per use


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("limits-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


_user_numbers = itertools.count()


def new_user(server: RunningServer) -> tuple[str, str]:
    user = (f"sprayed-{next(_user_numbers)}", "the-right-password-1")
    # From an address of its own: the admin's login must not count toward any test's limits.
    with client(server) as http:
        answer = http.post("/api/v1/users", json={"username": user[0], "password": user[1]}, auth=ADMIN)
    assert answer.status_code == 201, answer.text
    return user


def client(server: RunningServer, address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address or next(_addresses))
    return httpx.Client(base_url=server.url, transport=transport)


# Each way in: (client, username, password) -> the answer.
Login = Callable[[httpx.Client, str, str], httpx.Response]


def token_get(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.get("/token", params={"service": "dockyard"}, auth=(username, password))


def token_post(http: httpx.Client, username: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "service": "dockyard", "client_id": "test",
            "username": username, "password": password}  # fmt: skip
    return http.post("/token", data=form)


def v2_basic(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.get("/v2/", auth=(username, password))


def api_basic(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.get("/api/v1/me", auth=(username, password))


LOGINS = {"token-get": token_get, "token-post": token_post, "v2-basic": v2_basic, "api-basic": api_basic}
ways_in = pytest.mark.parametrize("login", LOGINS.values(), ids=LOGINS.keys())


def comparable(answer: httpx.Response) -> tuple[int, str, dict[str, str]]:
    """What a client can see of a refusal, minus what differs per request anyway."""
    headers = {k: v for k, v in answer.headers.items() if k not in ("date", "x-request-id", "content-length")}
    return answer.status_code, answer.text, headers


def assert_plain_refusal(answer: httpx.Response) -> None:
    assert answer.status_code in (400, 401), answer.text  # 400 invalid_grant is OAuth2's own answer
    assert "retry-after" not in answer.headers
    said = (answer.text + " ".join(answer.headers.values())).lower()
    assert not [word for word in LEAKY_WORDS if word in said], said


@ways_in
def test_a_sprayed_user_is_refused_even_with_the_right_password(server: RunningServer, login: Login) -> None:
    username, password = new_user(server)
    with client(server) as attacker:
        wrong = [login(attacker, username, f"guess-{n}") for n in range(MAX_FAILURES)]
    for answer in wrong:
        assert_plain_refusal(answer)

    # From another address, so it is the user's limit that holds, not the attacker's address's.
    with client(server) as owner:
        refused = login(owner, username, password)
        wrong_again = login(owner, username, "guess-again")
    assert_plain_refusal(refused)
    assert comparable(refused) == comparable(wrong[0]) == comparable(wrong_again)


@ways_in
def test_an_address_that_sprayed_is_refused_for_other_users_too(server: RunningServer, login: Login) -> None:
    targets = [new_user(server) for _ in range(MAX_FAILURES)]
    other_username, other_password = new_user(server)
    sprayer = next(_addresses)
    with client(server, sprayer) as attacker:
        for username, _ in targets:  # one guess each: no user reaches its own limit
            assert_plain_refusal(login(attacker, username, "Summer2024!"))
        refused = login(attacker, other_username, other_password)
        # A forged X-Forwarded-For does not make it another address.
        forged = attacker.get(
            "/v2/", auth=(other_username, other_password), headers={"X-Forwarded-For": "203.0.113.9"}
        )
    assert_plain_refusal(refused)
    assert forged.status_code == 401

    with client(server) as elsewhere:  # the same user and password from another address: fine
        assert login(elsewhere, other_username, other_password).status_code == 200


@ways_in
def test_refusals_never_tell_a_missing_user_from_a_wrong_password_or_a_limit(
    server: RunningServer, login: Login
) -> None:
    username, password = new_user(server)
    with client(server) as http:
        missing = login(http, "nobody-by-this-name", "guess")
    with client(server) as http:
        wrong = login(http, username, "guess")
    with client(server) as http:
        for n in range(MAX_FAILURES):
            login(http, username, f"guess-{n}")
    with client(server) as http:
        limited = login(http, username, password)

    for answer in (missing, wrong, limited):
        assert_plain_refusal(answer)
    assert comparable(missing) == comparable(wrong) == comparable(limited)


def test_the_limits_are_shared_by_every_way_in(server: RunningServer) -> None:
    """Guesses spread over /token, /v2 and /api/v1 count together: no way in has a budget of its own."""
    username, password = new_user(server)
    with client(server) as attacker:
        for login in (token_get, v2_basic, api_basic):
            assert_plain_refusal(login(attacker, username, "guess"))
    for login in LOGINS.values():
        with client(server) as owner:
            assert_plain_refusal(login(owner, username, password))


def test_an_unsprayed_user_logs_in_everywhere(server: RunningServer) -> None:
    """The control: the right password works on every way in when nobody has sprayed."""
    username, password = new_user(server)
    for login in LOGINS.values():
        with client(server) as http:
            answer = login(http, username, password)
        assert answer.status_code == 200, (login.__name__, answer.text)
