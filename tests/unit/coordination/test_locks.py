"""The lock contract (`LockManagerConformance`) on both implementations: files in a directory (one
node's processes) and a real Redis (every node). Two managers stand for two processes or nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dockyard.coordination.conformance import LockManagerConformance, Managers
from dockyard.coordination.interfaces import LockManager
from dockyard.coordination.locks import FileLocks
from dockyard.coordination.locks_redis import RedisLocks
from tests.support.redis import RedisServer


class TestFileLocks(LockManagerConformance):
    @pytest.fixture
    def managers(self, tmp_path: Path) -> Managers:
        return lambda: FileLocks(tmp_path / "locks")


class TestRedisLocks(LockManagerConformance):
    @pytest.fixture
    def managers(self, redis_server: RedisServer, tmp_path: Path) -> Iterator[Managers]:
        clients: list[redis.Redis] = []
        prefix = f"test:{tmp_path.name}:"  # a namespace per test: one Redis serves them all

        def make() -> LockManager:
            clients.append(redis.Redis.from_url(redis_server.url))
            return RedisLocks(clients[-1], prefix=prefix)

        yield make
        for client in clients:
            client.close()


def test_file_locks_hold_across_processes(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib; from dockyard.coordination.locks import FileLocks; "
        "print(FileLocks(pathlib.Path(sys.argv[1])).lock('purge', 30).acquire())"
    )
    run = [sys.executable, "-c", code, str(tmp_path / "locks")]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "True"
    # The other process exited holding it: its claim stands until it expires.
    assert not FileLocks(tmp_path / "locks").lock("purge", 30).acquire()
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_sweep_removes_only_long_idle_locks_of_the_prefix(tmp_path: Path) -> None:
    now = [1000.0]
    locks = FileLocks(tmp_path / "locks", clock=lambda: now[0])
    for name in ("proxy-a", "proxy-b", "gc"):
        claim = locks.lock(name, 10)
        assert claim.acquire()
        claim.release()
    held = locks.lock("proxy-held", 10_000)
    assert held.acquire()
    recent = locks.lock("proxy-recent", 10)
    assert recent.acquire()
    recent.release()
    an_hour_ago = time.time() - 3600
    for name in ("proxy-a", "proxy-b", "gc", "proxy-held"):
        os.utime(tmp_path / "locks" / f"{name}.lock", (an_hour_ago, an_hour_ago))
    now[0] += 3600  # "proxy-held" is still held: its ttl is longer
    assert locks.sweep("proxy-", idle=600) == 2
    names = sorted(p.name for p in (tmp_path / "locks").iterdir())
    assert names == ["gc.lock", "proxy-held.lock", "proxy-recent.lock"]  # other names, held, recent: kept
    held.release()  # still its own: the sweep left the held claim alone
    assert locks.lock("proxy-a", 10).acquire()  # a swept lock is simply free
    assert locks.sweep("proxy-", idle=600) == 0


def test_a_claim_of_a_process_that_died_is_free_with_free_dead_holders(tmp_path: Path) -> None:
    """A proxy fetch killed mid-blob: its lock must not hold the next pull up for the lock's TTL."""
    code = (
        "import os, sys, pathlib; from dockyard.coordination.locks import FileLocks; "
        "print(FileLocks(pathlib.Path(sys.argv[1])).lock('fetch', 60).acquire(), flush=True); os._exit(0)"
    )
    run = [sys.executable, "-c", code, str(tmp_path / "locks")]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "True"
    assert not FileLocks(tmp_path / "locks").lock("fetch", 60).acquire()  # by default: until it expires
    freeing = FileLocks(tmp_path / "locks", free_dead_holders=True)
    mine = freeing.lock("fetch", 60)
    assert mine.acquire()
    # A live holder (this process) keeps it, whatever the other side's setting.
    assert not freeing.lock("fetch", 60).acquire()
    mine.release()


def test_a_claim_naming_another_host_or_nothing_stands(tmp_path: Path) -> None:
    locks = FileLocks(tmp_path / "locks", free_dead_holders=True)
    path = tmp_path / "locks" / "fetch.lock"
    for holder in ("elsewhere.example 1 1", None, "garbage"):
        locks.lock("fetch", 60)  # makes the directory
        body = {"token": "someone", "expires": time.time() + 60, "holder": holder}
        path.write_text(json.dumps(body))
        assert not locks.lock("fetch", 60).acquire(), holder
