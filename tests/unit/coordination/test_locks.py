"""The lock contract (`LockManagerConformance`) on both implementations: files in a directory (one
node's processes) and a real Redis (every node). Two managers stand for two processes or nodes."""

from __future__ import annotations

import subprocess
import sys
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
