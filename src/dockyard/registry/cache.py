"""Read caches for the hot paths, kept correct across worker processes by a change feed.

Every write that could make a cached answer stale bumps a generation counter *after* its
transaction commits. A reader notes the generation *before* it queries, and stores the answer
under that generation; a later read that sees a newer generation drops the whole cache. So a
stale answer can never outlive the write that made it stale.
"""

from __future__ import annotations

import os
import struct
import threading
from enum import IntEnum
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from dockyard.datadir import map_file

_SLOT = struct.Struct("<Q")


class Topic(IntEnum):
    MANIFESTS = 0  # manifests, tags, repositories: tag lookups, tag lists, catalog
    BLOB_DELETES = 1  # blob links removed: positive blob-existence answers
    POLICIES = 2  # project policies read on hot paths: tag immutability rules
    AUTH = 3  # accounts, credentials, roles, signing keys: remembered logins, tokens, key rings
    # Untagged manifests deleted (garbage collection): answers by digest only. No tag, tag list or
    # catalog changes, so the caches of lookups by tag stay (a GC would otherwise empty them all).
    UNTAGGED_DELETES = 4


class ChangeFeed(Protocol):
    def generation(self, topic: Topic) -> int: ...

    def bump(self, topic: Topic) -> None: ...


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
    def __init__(self) -> None:
        self._values = [0] * len(Topic)

    def generation(self, topic: Topic) -> int:
        return self._values[topic]

    def bump(self, topic: Topic) -> None:
        self._values[topic] += 1


K = TypeVar("K")
V = TypeVar("V")


class GenerationCache(Generic[K, V]):
    """A bounded dict that empties itself when the generation of its topic (or of any of its
    topics) moves."""

    def __init__(self, feed: ChangeFeed, topic: Topic | tuple[Topic, ...], max_entries: int = 10_000) -> None:
        self._feed = feed
        self._topics = topic if isinstance(topic, tuple) else (topic,)
        self._max = max_entries
        self._entries: dict[K, V] = {}
        self._generation = self.current_generation()

    def current_generation(self) -> int:
        """Read before querying the DB; pass to `put`. With several topics: their generations side
        by side in one int (each is below 2**64), so it moves when any of them does."""
        generation = 0
        for topic in self._topics:
            generation = (generation << 64) | self._feed.generation(topic)
        return generation

    def get(self, key: K) -> V | None:
        generation = self.current_generation()
        if generation != self._generation:
            self._entries = {}
            self._generation = generation
            return None
        return self._entries.get(key)

    def put(self, key: K, value: V, generation: int) -> None:
        if generation != self._generation:
            if generation != self.current_generation():
                return  # something changed since the caller read; its answer may be stale
            self._entries = {}
            self._generation = generation
        if len(self._entries) >= self._max:
            self._entries = {}
        self._entries[key] = value
