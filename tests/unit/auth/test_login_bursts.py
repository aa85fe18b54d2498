"""Bursts of logins against the real password check (argon2id through LocalAuthenticator and the DB):
the same credentials in flight together cost one hash, at the token endpoint (`TokenIssuer`, called
from worker threads) and for Basic on /v2 (the gate, on the event loop); different credentials are
each checked; a failure reaches every identical attempt that waited for it, and counts once against
the login limit (it was one guess).

Each test holds the first hash until every caller has arrived, so "in flight together" is certain
rather than a matter of timing.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher

from dockyard.accounts import passwords
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.auth.interfaces import AuthenticationFailed, Principal
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.remembered import RememberedLogins
from dockyard.auth.singleflight import AsyncSingleFlight, SingleFlight
from dockyard.auth.tokens import KeyRing, TokenIssuer, TokenService
from dockyard.db.session import Database
from tests.unit.accounts.fixtures import FakeClock, Services, migrated_database

PASSWORD = "correct horse battery staple"
MAX_FAILURES = 3
ARRIVAL_TIMEOUT = 10.0  # only reached when callers never come: the test then fails on the counts


class CountingHasher(PasswordHasher):
    """The real argon2id hasher with the production parameters, counting verifies and how many run at
    once; the first verify waits until `callers` have entered the single flight."""

    def __init__(self, arrivals: Arrivals) -> None:
        real = passwords.password_hasher()
        super().__init__(real.time_cost, real.memory_cost, real.parallelism, real.hash_len, real.salt_len)
        self.arrivals = arrivals
        self.lock = threading.Lock()
        self.verifies = 0
        self.running = 0
        self.most_at_once = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self.lock:
            self.verifies += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.arrivals.wait_for_all()
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


class Arrivals:
    """Counts callers entering a single flight's `run`."""

    def __init__(self) -> None:
        self.expected = 0
        self.count = 0
        self.changed = threading.Condition()

    def expect(self, callers: int) -> None:
        with self.changed:
            self.expected, self.count = callers, 0

    def arrive(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for_all(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.count >= self.expected, timeout=ARRIVAL_TIMEOUT)


def counted_entries(flight: SingleFlight[Any], arrivals: Arrivals) -> None:
    run = flight.run

    def counted(key: bytes, compute: Callable[[], Any]) -> Any:
        arrivals.arrive()
        return run(key, compute)

    flight.run = counted  # type: ignore[method-assign]


def counted_async_entries(flight: AsyncSingleFlight[Any], arrivals: Arrivals) -> None:
    run = flight.run

    async def counted(key: bytes, compute: Callable[[], Any]) -> Any:
        arrivals.arrive()
        return await run(key, compute)

    flight.run = counted  # type: ignore[method-assign]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_database(tmp_path)
    yield database
    database.dispose()


@pytest.fixture
def arrivals() -> Arrivals:
    return Arrivals()


HASH_SLOTS = 2  # fewer than the distinct credentials of a burst below, whatever this machine's cores


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch, arrivals: Arrivals) -> CountingHasher:
    counting = CountingHasher(arrivals)
    monkeypatch.setattr(passwords, "_hasher", counting)
    monkeypatch.setattr(passwords, "_HASH_SLOTS", threading.BoundedSemaphore(HASH_SLOTS))
    return counting


@pytest.fixture
def authenticator(db: Database, hasher: CountingHasher) -> LocalAuthenticator:
    services = Services.on(db)
    for name in ("alice", "bob", "carol"):
        services.users.create(name, PASSWORD)
    limiter = InProcessLoginLimiter(MAX_FAILURES, 60, per_address=MAX_FAILURES, clock=FakeClock())
    return LocalAuthenticator(services.users, services.groups, services.tokens, services.robots, limiter)


@pytest.fixture
def issuer(db: Database, authenticator: LocalAuthenticator, arrivals: Arrivals) -> TokenIssuer:
    tokens = TokenService(KeyRing(db), issuer="dockyard-test", service="registry.test", lifetime=300)
    issuer = TokenIssuer(tokens, authenticator, AccessPolicy(db))
    counted_entries(issuer.in_flight, arrivals)
    return issuer


@pytest.fixture
def basic(authenticator: LocalAuthenticator, arrivals: Arrivals) -> RememberedLogins:
    credentials = RememberedLogins(authenticator, ttl=30, max_entries=100, clock=time.time)
    counted_async_entries(credentials.in_flight, arrivals)
    return credentials


def token_logins(issuer: TokenIssuer, arrivals: Arrivals, logins: list[tuple[str, str]]) -> list[str]:
    """Each login at once from its own thread: the subject of its token, or "refused"."""
    arrivals.expect(len(logins))

    def login(username: str, secret: str) -> str:
        try:
            grant = issuer.by_password(username, secret, [], "10.0.0.1", offline=False)
        except AuthenticationFailed:
            return "refused"
        return issuer.tokens.verify(grant.token.token).principal.name

    with ThreadPoolExecutor(len(logins)) as pool:
        return list(pool.map(lambda pair: login(*pair), logins))


def basic_logins(basic: RememberedLogins, arrivals: Arrivals, logins: list[tuple[str, str]]) -> list[str]:
    """Each login at once as its own request's coroutine: the principal's name, or "refused"."""
    arrivals.expect(len(logins))

    async def login(username: str, secret: str) -> str:
        raw = base64.b64encode(f"{username}:{secret}".encode())
        principal: Principal | None = await basic.principal(raw, "10.0.0.1")
        return "refused" if principal is None else principal.name

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(login(*pair) for pair in logins)))

    return asyncio.run(burst())


def test_a_burst_of_token_requests_with_the_same_credentials_hashes_once(
    issuer: TokenIssuer, arrivals: Arrivals, hasher: CountingHasher
) -> None:
    assert token_logins(issuer, arrivals, [("alice", PASSWORD)] * 16) == ["alice"] * 16
    assert hasher.verifies == 1
    assert token_logins(issuer, arrivals, [("alice", PASSWORD)]) == ["alice"]
    assert hasher.verifies == 1  # remembered afterwards, as before


def test_a_burst_of_basic_requests_with_the_same_credentials_hashes_once(
    basic: RememberedLogins, arrivals: Arrivals, hasher: CountingHasher
) -> None:
    assert basic_logins(basic, arrivals, [("alice", PASSWORD)] * 32) == ["alice"] * 32
    assert hasher.verifies == 1


@pytest.mark.parametrize("way_in", ["token", "basic"])
def test_different_credentials_in_one_burst_are_each_checked(
    issuer: TokenIssuer, basic: RememberedLogins, arrivals: Arrivals, hasher: CountingHasher, way_in: str
) -> None:
    logins = [("alice", PASSWORD), ("bob", PASSWORD), ("alice", "wrong password"), ("carol", PASSWORD)] * 4
    if way_in == "token":
        answers = token_logins(issuer, arrivals, logins)
    else:
        answers = basic_logins(basic, arrivals, logins)
    assert answers == ["alice", "bob", "refused", "carol"] * 4
    assert hasher.verifies == 4  # one per distinct username and password
    # Different credentials queue for the hash slots (7 MiB each) rather than all hashing at once.
    assert hasher.most_at_once <= HASH_SLOTS


@pytest.mark.parametrize("way_in", ["token", "basic"])
def test_a_wrong_password_reaches_every_waiter_and_counts_as_one_guess(
    issuer: TokenIssuer, basic: RememberedLogins, arrivals: Arrivals, hasher: CountingHasher, way_in: str
) -> None:
    def logins(pairs: list[tuple[str, str]]) -> list[str]:
        return (
            token_logins(issuer, arrivals, pairs)
            if way_in == "token"
            else basic_logins(basic, arrivals, pairs)
        )

    assert logins([("alice", "wrong password")] * 10) == ["refused"] * 10
    assert hasher.verifies == 1
    # Not remembered: the next identical attempt is checked (and counted) again.
    assert logins([("alice", "wrong password")]) == ["refused"]
    assert hasher.verifies == 2
    # Two guesses counted (per check, not per request): under the limit of three, the owner gets in.
    assert logins([("alice", PASSWORD)]) == ["alice"]
    # The failures still count: a third one from this address locks it, for bob's password too.
    assert logins([("carol", "wrong password")]) == ["refused"]
    assert logins([("bob", PASSWORD)]) == ["refused"]
    assert hasher.verifies == 4  # bob's attempt was refused without a hash, as a lockout is


def test_a_basic_check_goes_on_for_the_others_when_its_first_caller_goes_away() -> None:
    """The request that started a check may be cancelled (its client hung up): those waiting with the
    same credentials still get its result."""
    flight = AsyncSingleFlight[str]()
    release = asyncio.Event()

    async def slow_check() -> str:
        await release.wait()
        return "alice"

    async def scenario() -> tuple[bool, str]:
        first = asyncio.ensure_future(flight.run(b"key", slow_check))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(flight.run(b"key", slow_check))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        release.set()
        return first.cancelled(), await second

    assert asyncio.run(scenario()) == (True, "alice")
    assert len(flight) == 0
