"""Login rate limiting: per username and per client address, in a sliding window, with bounded memory."""

from __future__ import annotations

from tests.unit.accounts.fixtures import FakeClock, limiter


def test_a_user_is_refused_after_max_failures_until_the_window_passes() -> None:
    clock = FakeClock()
    limit = limiter(max_failures=3, window=60, clock=clock)
    for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"]:  # spread over addresses: the user count still rises
        assert limit.allowed("alice", address)
        limit.failed("alice", address)
    assert not limit.allowed("alice", "10.0.0.99")
    assert limit.allowed("bob", "10.0.0.99")
    clock.now += 59
    assert not limit.allowed("alice", "10.0.0.99")
    clock.now += 2
    assert limit.allowed("alice", "10.0.0.99")


def test_an_address_is_refused_after_max_failures_whatever_the_usernames() -> None:
    limit = limiter(max_failures=3)
    for name in ["alice", "bob", "carol"]:  # password spraying
        limit.failed(name, "192.0.2.7")
    assert not limit.allowed("dave", "192.0.2.7")
    assert limit.allowed("dave", "192.0.2.8")


def test_the_window_slides() -> None:
    clock = FakeClock()
    limit = limiter(max_failures=2, window=10, clock=clock)
    limit.failed("alice", None)
    clock.now += 6
    limit.failed("alice", None)
    assert not limit.allowed("alice", None)
    clock.now += 5  # the first failure left the window, the second has not
    assert limit.allowed("alice", None)
    limit.failed("alice", None)
    assert not limit.allowed("alice", None)


def test_success_forgets_the_users_failures_but_not_the_addresses() -> None:
    limit = limiter(max_failures=2)
    limit.failed("alice", "10.0.0.1")
    limit.succeeded("alice", "10.0.0.1")
    limit.failed("alice", "10.0.0.1")
    assert limit.allowed("alice", "10.0.0.2")  # the user has one failure now
    assert not limit.allowed("bob", "10.0.0.1")  # the address has two


def test_usernames_count_case_insensitively() -> None:
    limit = limiter(max_failures=2)
    limit.failed("Admin", None)
    limit.failed("ADMIN", None)
    assert not limit.allowed("admin", None)


def test_memory_is_bounded() -> None:
    from dockyard.accounts.limiter import InProcessLoginLimiter

    limit = InProcessLoginLimiter(1, 60, max_keys=10, clock=FakeClock())
    for number in range(1000):
        limit.failed(f"user{number}", None)
    assert len(limit._failures) == 10
    assert not limit.allowed("user999", None)
    assert limit.allowed("user0", None)  # the oldest were forgotten
