"""Change feeds of one process (`InProcessChangeFeed`) and of one node's worker processes
(`LocalChangeFeed`, a memory-mapped file). `feeds_redis.RedisChangeFeed` is every node's.

Every write that could make a cached answer stale bumps its topic *after* its transaction commits;
the caches that follow the topic (`caches.GenerationCache`) then drop what they hold.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
import zlib
from pathlib import Path

from dockyard.coordination.interfaces import KEY_SLOTS, Topic, key_slot
from dockyard.datadir import map_file

_SLOT = struct.Struct("<Q")
# The file: a word per topic (moved by every bump of it; a topic's word at topic * 8, as before keys
# existed), room for _TOPICS_MAX of them, then KEY_SLOTS words per topic (moved by a bump of a key in
# that slot, and all of them by a bump of the whole topic).
_TOPICS_MAX = 64
_KEYS_AT = _TOPICS_MAX * _SLOT.size
_KEY_BLOCK = KEY_SLOTS * _SLOT.size
_SLOT_MASK = KEY_SLOTS - 1
_KEYS_WORD = _TOPICS_MAX  # the first key word's index among the file's 8-byte words


def feed_file_size() -> int:
    return _KEYS_AT + len(Topic) * _KEY_BLOCK


class LocalChangeFeed:
    """Counters in a small memory-mapped file shared by every worker process on this node."""

    def __init__(self, path: Path) -> None:
        # Allocated, never sparse (a file of an older version is filled in): a bump on a full disk
        # must not SIGBUS. `serve` creates it before its workers start, so they find it allocated.
        self._map = map_file(path, feed_file_size())
        # The file's words, read in place: an item of a memoryview costs a fraction of struct's
        # unpack_from (which takes and releases the map's buffer on every call), and a cache hit reads
        # one or two of them. Native byte order: the values are random, compared only for equality.
        self._words = memoryview(self._map).cast("Q")
        self._key_words = [_KEYS_WORD + topic * KEY_SLOTS for topic in range(len(Topic))]  # by topic
        self._lock = threading.Lock()

    def generation(self, topic: Topic, key: str | None = None) -> int:
        if key is None:
            return self._words[topic]
        # key_slot(key), written out: this is read on every cache hit (twice for a tag's answers).
        return self._words[self._key_words[topic] + (zlib.crc32(key.encode()) & _SLOT_MASK)]

    def bump(self, topic: Topic, *keys: str) -> None:
        # Fresh random values rather than +1: no cross-process lock is needed for "it changed".
        value = os.urandom(_SLOT.size)
        block = _KEYS_AT + topic * _KEY_BLOCK
        with self._lock:
            if not keys:
                # Every key's word takes the topic's new value: fresh all the same (a key's generation
                # only has to differ from what it was), and a copy, where 32 KiB of os.urandom cost
                # 30-80 µs (a new repository bumps Topic.REPOSITORIES as a whole, on every first push).
                self._map[block : block + _KEY_BLOCK] = value * KEY_SLOTS
            for key in keys:
                at = block + key_slot(key) * _SLOT.size
                self._map[at : at + _SLOT.size] = os.urandom(_SLOT.size)
            self._map[topic * _SLOT.size : (topic + 1) * _SLOT.size] = value


class InProcessChangeFeed:
    """For a process that shares nothing with others (the in-memory store, tests)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._values = [0] * len(Topic)
        self._keys = [[0] * KEY_SLOTS for _ in Topic]

    def generation(self, topic: Topic, key: str | None = None) -> int:
        if key is None:
            return self._values[topic]
        return self._keys[topic][zlib.crc32(key.encode()) & _SLOT_MASK]  # key_slot(key), written out

    def bump(self, topic: Topic, *keys: str) -> None:
        value = next(self._counter)
        if not keys:
            self._keys[topic] = [value] * KEY_SLOTS
        for key in keys:
            self._keys[topic][key_slot(key)] = value
        self._values[topic] = value
