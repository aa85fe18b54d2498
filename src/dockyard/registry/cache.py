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
from collections.abc import Callable
from enum import IntEnum
from itertools import islice
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


# What an entry costs besides its own bytes: the dict slot, the key tuple, the value object (measured
# with tracemalloc on CPython 3.11 for a (name, reference) -> ManifestRecord entry: about 300 bytes).
ENTRY_OVERHEAD = 320
MIB = 1 << 20


def entry_weight(key: object, value: object) -> int:
    """A flat estimate for small entries (sizes, ids, rules): the fixed cost only."""
    return ENTRY_OVERHEAD


class GenerationCache(Generic[K, V]):
    """A dict bounded by memory that empties itself when the generation of its topic (or of any of
    its topics) moves.

    `max_bytes` bounds what its entries weigh (`weigh(key, value)`: their bytes plus ENTRY_OVERHEAD);
    when a put would pass it, the oldest quarter of the entries goes (first in, first out: no list to
    keep per hit). 0 keeps nothing (every read goes to the database)."""

    def __init__(
        self,
        feed: ChangeFeed,
        topic: Topic | tuple[Topic, ...],
        max_bytes: int = 4 * MIB,
        weigh: Callable[[K, V], int] = entry_weight,
    ) -> None:
        self._feed = feed
        self._topics = topic if isinstance(topic, tuple) else (topic,)
        self._max_bytes = max_bytes
        self._weigh = weigh
        self._entries: dict[K, tuple[V, int]] = {}
        self._bytes = 0
        self._generation = self.current_generation()

    @property
    def weight(self) -> int:
        """What the entries weigh now, in bytes (estimated)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

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
            self._clear(generation)
            return None
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: K, value: V, generation: int) -> None:
        if generation != self._generation:
            if generation != self.current_generation():
                return  # something changed since the caller read; its answer may be stale
            self._clear(generation)
        weight = self._weigh(key, value)
        if weight > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        while self._bytes + weight > self._max_bytes and self._entries:
            self._evict_oldest()
        self._entries[key] = (value, weight)
        self._bytes += weight

    def _clear(self, generation: int) -> None:
        self._entries = {}
        self._bytes = 0
        self._generation = generation

    def _evict_oldest(self) -> None:
        # A new dict of the newest three quarters: O(n) once per quarter turned over, and no holes
        # left at the front of the dict for later lookups to skip.
        kept = dict(islice(self._entries.items(), len(self._entries) // 4 + 1, None))
        self._entries = kept
        self._bytes = sum(weight for _, weight in kept.values())
