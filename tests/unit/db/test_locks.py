"""The lock contract, checked against both implementations: files in a directory (one node's processes)
and a real Redis (every node). Two managers stand for two processes or nodes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dockyard.db.locks import FileLocks, LockLost, LockManager, RedisLocks, holding
from tests.support.redis import RedisServer

pytestmark = pytest.mark.db_independent

Managers = Callable[[], LockManager]  # each call: another process's or node's view


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("locks-redis"))
    server.start()
    yield server.url
    server.kill()


@pytest.fixture(params=["file", "redis"])
def managers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Managers]:
    if request.param == "file":
        yield lambda: FileLocks(tmp_path / "locks")
        return
    url = request.getfixturevalue("redis_url")
    clients: list[redis.Redis] = []
    prefix = f"test:{tmp_path.name}:"  # a namespace per test: one Redis serves them all

    def make() -> LockManager:
        clients.append(redis.Redis.from_url(url))
        return RedisLocks(clients[-1], prefix=prefix)

    yield make
    for client in clients:
        client.close()


def test_only_one_holder_at_a_time(managers: Managers) -> None:
    first, second = managers().lock("purge", 30), managers().lock("purge", 30)
    assert first.acquire()
    assert not second.acquire()
    assert not first.acquire()  # not reentrant
    first.release()
    assert second.acquire()
    second.release()


def test_different_names_do_not_conflict(managers: Managers) -> None:
    one, other = managers().lock("gc", 30), managers().lock("audit-purge", 30)
    assert one.acquire() and other.acquire()
    one.release()
    other.release()


def test_an_expired_claim_is_free_and_its_old_holder_cannot_release_the_new_one(managers: Managers) -> None:
    stale, fresh = managers().lock("purge", 0.3), managers().lock("purge", 30)
    assert stale.acquire()
    time.sleep(0.5)
    assert fresh.acquire()  # the old holder hung past its ttl
    with pytest.raises(LockLost):
        stale.release()
    with pytest.raises(LockLost):
        stale.extend()
    assert not managers().lock("purge", 30).acquire()  # still the fresh holder's
    fresh.release()


def test_extend_keeps_a_claim_alive(managers: Managers) -> None:
    # Seconds, not tenths: a loaded CI machine oversleeps by a good part of a second.
    lock = managers().lock("long-work", 3)
    assert lock.acquire()
    time.sleep(2)
    lock.extend()
    time.sleep(2)
    assert not managers().lock("long-work", 30).acquire()  # 4 s after taking it, ttl 3: still held
    lock.release()


def test_release_of_a_claim_never_taken_or_released_twice_is_refused(managers: Managers) -> None:
    lock = managers().lock("purge", 30)
    with pytest.raises(LockLost):
        lock.release()
    assert lock.acquire()
    lock.release()
    with pytest.raises(LockLost):
        lock.release()


def test_acquire_can_wait_for_the_holder(managers: Managers) -> None:
    holder, waiter = managers().lock("purge", 0.3), managers().lock("purge", 30)
    assert holder.acquire()
    assert not waiter.acquire(wait=0.05)
    started = time.monotonic()
    assert waiter.acquire(wait=5)  # the holder's claim runs out
    assert time.monotonic() - started < 3
    waiter.release()


def test_holding_releases_at_the_end(managers: Managers) -> None:
    manager = managers()
    with holding(manager.lock("job", 30)) as held:
        assert held
        with holding(managers().lock("job", 30)) as also:
            assert not also
    assert managers().lock("job", 30).acquire()


def test_bad_names_and_ttls_are_refused(managers: Managers) -> None:
    with pytest.raises(ValueError, match="lock name"):
        managers().lock("../etc/passwd", 30)
    with pytest.raises(ValueError, match="ttl"):
        managers().lock("ok", 0)


def test_file_locks_hold_across_processes(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib; from dockyard.db.locks import FileLocks; "
        "print(FileLocks(pathlib.Path(sys.argv[1])).lock('purge', 30).acquire())"
    )
    run = [sys.executable, "-c", code, str(tmp_path / "locks")]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "True"
    # The other process exited holding it: its claim stands until it expires.
    assert not FileLocks(tmp_path / "locks").lock("purge", 30).acquire()
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "False"
