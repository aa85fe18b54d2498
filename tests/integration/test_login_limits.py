"""Password guessing against a real `dockyard serve`: failed logins are limited per client address,
per address and account, and per account, on every way in that takes a password (GET /token with
Basic, the OAuth2 POST form, Basic on /v2, Basic on /api/v1). The limits slow the guesser, never the
owner: a correct password from an address that is not failing always gets in, and robots and personal
tokens are never locked by guessing. A refusal looks exactly like a wrong password: it never says
whether the user exists or that a limit was hit.

Attempts come from different loopback addresses (127.0.0.2, 127.0.0.3, ...; the server listens on
127.0.0.1) so the limits can be told apart. One worker: the limits are per process without Redis.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "limits-admin-password-1")
MAX_FAILURES = 3  # from one address for one account
PER_ADDRESS = 6  # from one address, whatever the accounts
PER_ACCOUNT = 6  # for one account, from every address
CONFIG: dict[str, Any] = {
    "auth": {
        "enabled": True,
        "login_limit": {
            "max_failures": MAX_FAILURES,
            "max_failures_per_address": PER_ADDRESS,
            "max_failures_per_account": PER_ACCOUNT,
            "window": "1m",
        },
    },
    "http": {"workers": 1},
}
LEAKY_WORDS = ("limit", "too many", "locked", "exist", "unknown user", "no such", "retry", "wait")
_addresses = (f"127.0.0.{n}" for n in itertools.count(2))  # a fresh client address per use


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
    return httpx.Client(base_url=server.url, transport=transport, timeout=HTTP_TIMEOUT)


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
    # 401 on every way in, POST /token too (there with OAuth2's `invalid_grant`): all look alike.
    assert answer.status_code == 401, answer.text
    assert "retry-after" not in answer.headers
    said = (answer.text + " ".join(answer.headers.values())).lower()
    assert not [word for word in LEAKY_WORDS if word in said], said


@ways_in
def test_a_guessing_address_is_refused_and_the_owner_elsewhere_is_not(
    server: RunningServer, login: Login
) -> None:
    username, password = new_user(server)
    guesser, owner = next(_addresses), next(_addresses)
    with client(server, guesser) as attacker:
        wrong = [login(attacker, username, f"guess-{n}") for n in range(MAX_FAILURES)]
        refused = login(attacker, username, password)  # even the right password, from there
        wrong_again = login(attacker, username, "guess-again")
    for answer in (*wrong, refused, wrong_again):
        assert_plain_refusal(answer)
    assert comparable(refused) == comparable(wrong[0]) == comparable(wrong_again)

    with client(server, owner) as http:  # somebody else's guesses never lock the owner out
        assert login(http, username, password).status_code == 200


def test_the_issues_lockout_no_longer_happens(server: RunningServer) -> None:
    """40 wrong passwords for `admin` from one address used to lock admin out of /token, /v2 and
    /api/v1 from every address for 15 minutes."""
    guesser = next(_addresses)
    with client(server, guesser) as attacker:
        for n in range(40):
            assert_plain_refusal(token_get(attacker, ADMIN[0], f"guess-{n}"))
        assert_plain_refusal(token_get(attacker, *ADMIN))
    for login in LOGINS.values():
        with client(server) as owner:
            answer = login(owner, *ADMIN)
        assert answer.status_code == 200, (login.__name__, answer.text)


@ways_in
def test_an_address_that_sprayed_is_refused_for_other_users_too(server: RunningServer, login: Login) -> None:
    targets = [new_user(server) for _ in range(PER_ADDRESS)]
    other_username, other_password = new_user(server)
    sprayer = next(_addresses)
    with client(server, sprayer) as attacker:
        for username, _ in targets:  # one guess each: no user reaches a limit of its own
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


def test_an_account_guessed_from_many_addresses_still_lets_the_owner_in(server: RunningServer) -> None:
    """Past the account-wide limit, every address that guessed is refused after one guess; an
    address that has not failed for the account is checked as ever."""
    username, password = new_user(server)
    guessers = [next(_addresses) for _ in range(PER_ACCOUNT)]
    for address in guessers:
        with client(server, address) as attacker:
            assert_plain_refusal(token_get(attacker, username, "guess"))
    for address in guessers[:2]:
        with client(server, address) as attacker:
            assert_plain_refusal(token_get(attacker, username, password))
    for login in LOGINS.values():
        with client(server) as owner:
            assert login(owner, username, password).status_code == 200


@ways_in
def test_a_remembered_login_does_not_let_a_refused_address_in(server: RunningServer, login: Login) -> None:
    """The owner's success is remembered a few seconds (a password check is slow on purpose), but
    for the owner's address only: a refused address gains nothing from it."""
    username, password = new_user(server)
    guesser = next(_addresses)
    with client(server, guesser) as attacker:
        for n in range(MAX_FAILURES):
            assert_plain_refusal(login(attacker, username, f"guess-{n}"))
    with client(server) as owner:
        assert login(owner, username, password).status_code == 200
    with client(server, guesser) as attacker:
        assert_plain_refusal(login(attacker, username, password))


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
        limited = login(http, username, password)

    for answer in (missing, wrong, limited):
        assert_plain_refusal(answer)
    assert comparable(missing) == comparable(wrong) == comparable(limited)


def test_the_limits_are_shared_by_every_way_in(server: RunningServer) -> None:
    """Guesses spread over /token, /v2 and /api/v1 count together: no way in has a budget of its own."""
    username, password = new_user(server)
    guesser = next(_addresses)
    with client(server, guesser) as attacker:
        for login in (token_get, v2_basic, api_basic):
            assert_plain_refusal(login(attacker, username, "guess"))
    for login in LOGINS.values():
        with client(server, guesser) as attacker:
            assert_plain_refusal(login(attacker, username, password))


def test_guessing_a_robots_secret_never_locks_the_robot(server: RunningServer) -> None:
    """A robot's name is visible to every project guest: guessing its secret slows the guessing
    address only, and the CI job keeps working, from anywhere, the guesser's address included until
    that address is over its own limit."""
    number = next(_user_numbers)
    with client(server) as http:
        made = http.post("/api/v1/projects", json={"name": f"ci-{number}"}, auth=ADMIN)
        assert made.status_code == 201, made.text
        permissions = [{"project": f"ci-{number}", "actions": ["pull"]}]
        body = {"name": f"ci-{number}", "permissions": permissions}
        created = http.post("/api/v1/robots", json=body, auth=ADMIN)
    assert created.status_code == 201, created.text
    robot, secret = created.json()["name"], created.json()["secret"]
    guesser, ci = next(_addresses), next(_addresses)
    with client(server, guesser) as attacker:
        for n in range(PER_ADDRESS - 1):  # past the per-account limits, below the address's
            assert_plain_refusal(token_get(attacker, robot, f"dyr_guess-{n}"))
        assert token_get(attacker, robot, secret).status_code == 200
        assert_plain_refusal(token_get(attacker, robot, "dyr_guess-last"))
        # Now the address is over its own limit: refused whatever it sends (the robot's success just
        # before is remembered for this address a few seconds, as for any client).
        assert_plain_refusal(token_get(attacker, *ADMIN))
    for login in LOGINS.values():
        with client(server, ci) as http:
            answer = login(http, robot, secret)
        assert answer.status_code == 200, (login.__name__, answer.text)


def test_a_guarded_account_still_takes_a_personal_token(server: RunningServer) -> None:
    username, password = new_user(server)
    with client(server) as http:
        made = http.post("/api/v1/me/tokens", json={"name": "ci"}, auth=(username, password))
    assert made.status_code == 201, made.text
    personal_token = made.json()["secret"]
    shared = next(_addresses)  # a CI runner behind the same address as somebody guessing
    with client(server, shared) as attacker:
        for n in range(MAX_FAILURES):
            assert_plain_refusal(token_get(attacker, username, f"guess-{n}"))
        assert_plain_refusal(token_get(attacker, username, password))
        for login in LOGINS.values():
            answer = login(attacker, username, personal_token)
            assert answer.status_code == 200, (login.__name__, answer.text)


def test_an_unsprayed_user_logs_in_everywhere(server: RunningServer) -> None:
    """The control: the right password works on every way in when nobody has guessed."""
    username, password = new_user(server)
    for login in LOGINS.values():
        with client(server) as http:
            answer = login(http, username, password)
        assert answer.status_code == 200, (login.__name__, answer.text)
