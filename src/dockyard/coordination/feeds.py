"""Change feeds of one process (`InProcessChangeFeed`) and of one node's worker processes
(`LocalChangeFeed`, a memory-mapped file). `feeds_redis.RedisChangeFeed` is every node's.

Every write that could make a cached answer stale bumps its topic *after* its transaction commits;
the caches that follow the topic (`caches.GenerationCache`) then drop what they hold.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from dockyard.coordination.interfaces import Topic
from dockyard.datadir import map_file

_SLOT = struct.Struct("<Q")


class LocalChangeFeed:
    """Counters in a small memory-mapped file shared by every worker process on this node."""

    def __init__(self, path: Path) -> None:
        # Allocated, never sparse (a file of an older version is filled in): a bump on a full disk
        # must not SIGBUS. `serve` creates it before its workers start, so they find it allocated.
        self._map = map_file(path, _SLOT.size * len(Topic))
        self._lock = threading.Lock()

    def generation(self, topic: Topic) -> int:
        return int(_SLOT.unpack_from(self._map, topic * _SLOT.size)[0])

    def bump(self, topic: Topic) -> None:
        # A fresh random value rather than +1: no cross-process lock is needed for "it changed".
        value = int.from_bytes(os.urandom(8), "little")
        with self._lock:
            _SLOT.pack_into(self._map, topic * _SLOT.size, value)


class InProcessChangeFeed:
    """For a process that shares nothing with others (the in-memory store, tests)."""

    def __init__(self) -> None:
        self._values = [0] * len(Topic)

    def generation(self, topic: Topic) -> int:
        return self._values[topic]

    def bump(self, topic: Topic) -> None:
        self._values[topic] += 1
