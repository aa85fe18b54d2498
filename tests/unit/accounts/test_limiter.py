"""Login limits, one conformance suite for both limiters (this process's and Redis's), then what only
one of them does. The limits slow the guesser, never the owner: per address, per address and
account, and an account-wide count that only ever refuses addresses that failed for the account."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from dockyard.accounts.interfaces import LoginLimiter, LoginStanding
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.limiter_redis import KEY_PREFIX, RedisLoginLimiter
from dockyard.coordination.redis_client import connect
from tests.support.redis import RedisServer
from tests.unit.accounts.fixtures import FakeClock

OPEN, GUARDED, BLOCKED = LoginStanding.OPEN, LoginStanding.ACCOUNT_GUARDED, LoginStanding.ADDRESS_BLOCKED
WINDOW = 60.0


@dataclass
class Limits:
    """A factory of limiters of one kind, all sharing one store, and a way to let time pass."""

    make: Callable[..., LoginLimiter]
    advance: Callable[[float], None]


@pytest.fixture(params=["in-process", "redis"])
def limits(request: pytest.FixtureRequest) -> Iterator[Limits]:
    clock = FakeClock()
    if request.param == "in-process":
        yield Limits(lambda *args, **kw: InProcessLoginLimiter(*args, clock=clock, **kw), _ticking(clock))
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushall()

    def advance(seconds: float) -> None:
        """Redis keeps its own time: shorten every counter's life by `seconds` instead."""
        clock.now += seconds
        for key in client.scan_iter(f"{KEY_PREFIX}*"):
            left = int(client.pttl(key)) - int(seconds * 1000)
            if left > 0:
                client.pexpire(key, left)
            else:
                client.delete(key)

    def make(*args: object, **kw: object) -> LoginLimiter:
        return RedisLoginLimiter(connect(server.url), *args, clock=clock, **kw)  # type: ignore[arg-type]

    yield Limits(make, advance)
    client.close()


def _ticking(clock: FakeClock) -> Callable[[float], None]:
    def advance(seconds: float) -> None:
        clock.now += seconds

    return advance


def fail(limiter: LoginLimiter, username: str | None, address: str | None, times: int = 1) -> None:
    for _ in range(times):
        limiter.failed(username, address)


# --- the conformance suite -----------------------------------------------------------------------
def test_an_address_guessing_one_account_is_refused_that_account_only(limits: Limits) -> None:
    limiter = limits.make(3, WINDOW)
    fail(limiter, "alice", "10.0.0.1", 2)
    assert limiter.standing("alice", "10.0.0.1") is OPEN
    fail(limiter, "alice", "10.0.0.1")
    assert limiter.standing("alice", "10.0.0.1") is GUARDED
    assert limiter.standing("alice", "10.0.0.2") is OPEN  # the owner, elsewhere
    assert limiter.standing("bob", "10.0.0.1") is OPEN  # other accounts, from the same address


def test_an_address_spraying_many_accounts_is_refused_for_all(limits: Limits) -> None:
    limiter = limits.make(3, WINDOW, per_address=5)
    for name in ["alice", "bob", "carol", "dave", "erin"]:  # one guess each: no pair near its limit
        assert limiter.standing(name, "192.0.2.7") is OPEN
        limiter.failed(name, "192.0.2.7")
    assert limiter.standing("frank", "192.0.2.7") is BLOCKED
    assert limiter.standing("robot$ci", "192.0.2.7") is BLOCKED
    assert limiter.standing("frank", "192.0.2.8") is OPEN


def test_an_account_guessed_from_many_addresses_stays_open_to_addresses_that_did_not_fail(
    limits: Limits,
) -> None:
    limiter = limits.make(3, WINDOW, per_account=6)
    attackers = [f"203.0.113.{n}" for n in range(6)]
    for address in attackers:  # one guess from each: no address nor pair near its limit
        limiter.failed("admin", address)
    for address in attackers:
        assert limiter.standing("admin", address) is GUARDED  # the account is under attack
        assert limiter.standing("bob", address) is OPEN
    assert limiter.standing("admin", "10.0.0.1") is OPEN  # the owner, who has not failed
    assert limiter.standing("Admin", "10.0.0.1") is OPEN
    # A new attacker address gets its first guess checked, then it is refused too.
    limiter.failed("admin", "203.0.113.99")
    assert limiter.standing("admin", "203.0.113.99") is GUARDED


def test_below_the_account_limit_a_failing_address_keeps_its_own_tries(limits: Limits) -> None:
    limiter = limits.make(3, WINDOW, per_account=6)
    fail(limiter, "admin", "10.0.0.1", 2)
    fail(limiter, "admin", "10.0.0.2", 2)
    assert limiter.standing("admin", "10.0.0.1") is OPEN


def test_robot_failures_slow_the_address_and_never_the_robot(limits: Limits) -> None:
    """A robot's name is visible to every project guest and its secret cannot be guessed: its
    failures (username None) count against the guessing address alone."""
    limiter = limits.make(3, WINDOW, per_address=5, per_account=5)
    fail(limiter, None, "198.51.100.1", 4)
    assert limiter.standing("robot$team+ci", "198.51.100.1") is OPEN
    assert limiter.standing("robot$team+ci", "10.0.0.1") is OPEN
    limiter.failed(None, "198.51.100.1")
    assert limiter.standing("robot$team+ci", "198.51.100.1") is BLOCKED
    assert limiter.standing("alice", "198.51.100.1") is BLOCKED
    assert limiter.standing("robot$team+ci", "10.0.0.1") is OPEN  # the CI job, from its own address


def test_success_forgets_the_pairs_failures_but_not_the_addresses_nor_the_accounts(
    limits: Limits,
) -> None:
    limiter = limits.make(2, WINDOW, per_address=3, per_account=3)
    fail(limiter, "alice", "10.0.0.1", 2)
    assert limiter.standing("alice", "10.0.0.1") is GUARDED
    limiter.succeeded("alice", "10.0.0.1")  # e.g. with a personal token while guarded
    assert limiter.standing("alice", "10.0.0.1") is OPEN
    limiter.failed("bob", "10.0.0.1")
    assert limiter.standing("carol", "10.0.0.1") is BLOCKED  # the address kept its two failures
    limiter.failed("alice", "10.0.0.9")
    assert limiter.standing("alice", "10.0.0.9") is GUARDED  # the account kept its two as well


def test_counts_end_with_the_window(limits: Limits) -> None:
    limiter = limits.make(2, WINDOW, per_address=4, per_account=4)
    fail(limiter, "alice", "10.0.0.1", 2)
    fail(limiter, "bob", "10.0.0.2", 4)
    limits.advance(WINDOW - 2)
    assert limiter.standing("alice", "10.0.0.1") is GUARDED
    assert limiter.standing("carol", "10.0.0.2") is BLOCKED
    limits.advance(3)
    assert limiter.standing("alice", "10.0.0.1") is OPEN
    assert limiter.standing("carol", "10.0.0.2") is OPEN


def test_usernames_count_whatever_their_case(limits: Limits) -> None:
    limiter = limits.make(2, WINDOW)
    limiter.failed("Admin", "10.0.0.1")
    limiter.failed("ADMIN", "10.0.0.1")
    assert limiter.standing("admin", "10.0.0.1") is GUARDED


def test_clients_without_an_address_count_as_one_address(limits: Limits) -> None:
    limiter = limits.make(2, WINDOW, per_address=3)
    fail(limiter, "alice", None, 2)
    assert limiter.standing("alice", None) is GUARDED
    assert limiter.standing("alice", "10.0.0.1") is OPEN
    limiter.failed("bob", None)
    assert limiter.standing("carol", None) is BLOCKED


def test_the_limits_are_checked(limits: Limits) -> None:
    for bad in ({"per_address": 0}, {"per_account": 0}):
        with pytest.raises(ValueError, match=">= 1"):
            limits.make(3, WINDOW, **bad)
    with pytest.raises(ValueError, match=">= 1"):
        limits.make(0, WINDOW)


# --- this process's limiter --------------------------------------------------------------------
def test_the_window_slides() -> None:
    clock = FakeClock()
    limiter = InProcessLoginLimiter(2, 10, clock=clock)
    limiter.failed("alice", None)
    clock.now += 6
    limiter.failed("alice", None)
    assert limiter.standing("alice", None) is GUARDED
    clock.now += 5  # the first failure left the window, the second has not
    assert limiter.standing("alice", None) is OPEN
    limiter.failed("alice", None)
    assert limiter.standing("alice", None) is GUARDED


def test_memory_is_bounded() -> None:
    limiter = InProcessLoginLimiter(1, 60, max_keys=30, clock=FakeClock())
    for number in range(1000):
        limiter.failed(f"user{number}", f"10.0.{number // 250}.{number % 250}")
    assert len(limiter._failures) == 30
    assert limiter.standing("user999", "10.0.3.249") is GUARDED
    assert limiter.standing("user0", "10.0.0.0") is OPEN  # the oldest were forgotten


# --- Redis's limiter ---------------------------------------------------------------------------
def test_redis_counts_are_shared_and_fall_back_to_the_process_when_redis_is_gone(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        one = RedisLoginLimiter(connect(server.url), 3, 60)
        other = RedisLoginLimiter(connect(server.url), 3, 60)
        one.failed("Alice", "10.0.0.1")
        other.failed("alice", "10.0.0.1")
        assert one.standing("alice", "10.0.0.1") is OPEN
        other.failed("alice", "10.0.0.1")
        assert one.standing("alice", "10.0.0.1") is GUARDED  # three failures, counted by two limiters
        key_ttl = redis.Redis.from_url(server.url).pttl(f"{KEY_PREFIX}pair:10.0.0.1/alice")
        assert 0 < key_ttl <= 60_000

        server.kill()
        fail(one, "carol", "10.0.0.4", 3)  # counted in this process while Redis is away
        assert one.standing("carol", "10.0.0.4") is GUARDED
        assert other.standing("carol", "10.0.0.4") is OPEN  # the other process never saw them
    finally:
        server.kill()
