"""The pool contract (`SlotsConformance`) on both implementations: files in a directory (one node's
workers) and a real Redis (every node). Two views stand for two processes or nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dockyard.coordination.conformance import Pools, SlotsConformance
from dockyard.coordination.interfaces import Slots
from dockyard.coordination.slots import FileSlots
from dockyard.coordination.slots_redis import RedisSlots
from tests.support.redis import RedisServer


class TestFileSlots(SlotsConformance):
    @pytest.fixture
    def pools(self, tmp_path: Path) -> Pools:
        return lambda: FileSlots(tmp_path / "slots")


class TestRedisSlots(SlotsConformance):
    @pytest.fixture
    def pools(self, redis_server: RedisServer) -> Iterator[Pools]:
        clients: list[redis.Redis] = []

        def make() -> Slots:
            clients.append(redis.Redis.from_url(redis_server.url))
            return RedisSlots(clients[-1])

        yield make
        for client in clients:
            client.close()


def test_file_slots_leave_no_file_for_an_empty_pool(tmp_path: Path) -> None:
    slots = FileSlots(tmp_path)
    slots.claim([("uploads:alice", 2)], "u1", 60)
    slots.release(["uploads:alice"], "u1")
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock"]


def test_a_torn_pool_file_holds_nobody(tmp_path: Path) -> None:
    slots = FileSlots(tmp_path)
    slots.claim([("pool", 1)], "u1", 60)
    next(tmp_path.glob("*.json")).write_text('{"u1": ')
    assert slots.claim([("pool", 1)], "u2", 60) is None
