"""The one per-process cache: bounded by memory, emptied when its generation source moves (the
change feed's topics, `interfaces.generation_of`), with an optional expiry per entry.

The registry's hot-path reads, the projects' quota limits and immutability rules, and auth's
remembered logins, token verifications and policy answers all use it. A reader notes the generation
*before* it queries and stores the answer under it; a later read that sees a newer generation drops
the whole cache. So a stale answer can never outlive the write that made it stale.

`KeyedGenerationCache` is the same per key: each entry follows its own key's generation (that of
the repository of a (repository, reference) key: `interfaces.keyed_generation_of`; or of the tag:
`interfaces.tag_generation_of`), so a write to one repository drops that repository's answers (or
that tag's) and keeps every other's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from itertools import islice
from typing import Any, Generic, TypeVar

from dockyard.coordination.interfaces import Generation, KeyedGeneration

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
NO_CLOCK = "an entry with an expiry needs a cache with a clock"
# An entry as a cache keeps it: (value, weight, expires_at, ...), what else its kind needs after.
E = TypeVar("E", bound=tuple[Any, ...])

# What an entry costs besides its own bytes: the dict slot, the key tuple, the value object (measured
# with tracemalloc on CPython 3.11 for a (name, reference) -> ManifestRecord entry: about 300 bytes).
ENTRY_OVERHEAD = 320
MIB = 1 << 20


def entry_weight(key: object, value: object) -> int:
    """A flat estimate for small entries (sizes, ids, rules, principals): the fixed cost only."""
    return ENTRY_OVERHEAD


def entries(count: int) -> int:
    """The `max_bytes` that holds `count` entries of the flat estimate: a bound by count."""
    return count * ENTRY_OVERHEAD


class _BoundedCache(Generic[K, V, E]):
    """What both caches keep the same way: entries `(value, weight, expires_at, ...)` in a dict
    bounded by `max_bytes` (`weigh(key, value)`: their bytes plus ENTRY_OVERHEAD), the hit counters
    /metrics reads, and the eviction when a put would pass the bound: the oldest 64th, first in,
    first out (no list to keep per hit). Entries that can no longer be served (expired, or their
    key's generation moved) are dropped when a lookup finds them, or go with their 64th: a put
    never walks every entry (that walk, a Python call per entry, stalled the event loop for 10-20 ms
    at 15,000 entries). Each cache's `get` stays its own, written out: it is the hot path.

    Writes (puts, drops, clears) take a lock, reads do not: the event loop and PostgreSQL's
    point-read threads put into the same caches, and a put that evicts walks the dict and adjusts
    the weight, which another thread's put must not change under it."""

    def __init__(
        self,
        max_bytes: int,
        weigh: Callable[[K, V], int],
        clock: Callable[[], float] | None,
    ) -> None:
        self._max_bytes = max_bytes
        self._weigh = weigh
        self._clock = clock
        self._entries: dict[K, E] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # writes only: a put follows a miss (100+ µs), the lock 0.1 µs
        self.lookups = 0  # gets, and those answered from here: read by /metrics (hit ratios)
        self.hits = 0

    @property
    def weight(self) -> int:
        """What the entries weigh now, in bytes (estimated)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _store(self, key: K, entry: E) -> None:
        """Keep `entry` (its weight at [1]) under `key`, making room for it; nothing heavier than the
        whole bound is kept."""
        weight: int = entry[1]
        if weight > self._max_bytes:
            return
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._bytes + weight > self._max_bytes and entries:
                self._evict_oldest(entries)
            entries[key] = entry
            self._bytes += weight

    def _drop(self, key: K) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def _evict_oldest(self, entries: dict[K, E]) -> None:
        # The oldest 64th, popped in place: the work is that 64th's, not the whole dict's
        # (a new dict of the rest cost 2 ms at 15,000 entries, 5-7 at 50,000). The holes the pops
        # leave at the front are skipped in C by the next eviction's walk, and gone at the dict's
        # next resize.
        doomed = list(islice(entries, len(entries) // 64 + 1))
        freed = 0
        for key in doomed:
            freed += entries.pop(key)[1]
        self._bytes -= freed

    def _reset(self) -> None:
        with self._lock:
            self._entries = {}
            self._bytes = 0


class GenerationCache(_BoundedCache[K, V, tuple[V, int, float | None]]):
    """A dict bounded by memory that empties itself when `generation` moves (None: never; then the
    generation handed to `put` is not checked and only expiries count).

    `max_bytes` bounds what its entries weigh (`weigh(key, value)`: their bytes plus ENTRY_OVERHEAD);
    when a put would pass it, the oldest 64th goes (first in, first out: no list to keep per hit;
    an expired entry is dropped when a lookup finds it). 0 keeps nothing (every read goes to the
    source). Entries put with `expires_at` are not served once `clock()` reaches it. Reads are not
    locked: a put lost to a clear under a race only costs one more read of the source."""

    def __init__(
        self,
        generation: Generation | None,
        max_bytes: int = 4 * MIB,
        weigh: Callable[[K, V], int] = entry_weight,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(max_bytes, weigh, clock)
        self._source = generation
        self._generation = self.current_generation()

    def current_generation(self) -> int:
        """Read before querying the source of truth; pass to `put`."""
        return self._source() if self._source is not None else 0

    def get(self, key: K) -> V | None:
        self.lookups += 1
        generation = self.current_generation()
        if generation != self._generation:
            self._clear(generation)
            return None
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at = found[2]
        if expires_at is not None and self._clock is not None and self._clock() >= expires_at:
            self._drop(key)
            return None
        self.hits += 1
        return found[0]

    def put(self, key: K, value: V, generation: int | None, expires_at: float | None = None) -> None:
        if expires_at is not None and self._clock is None:
            raise ValueError(NO_CLOCK)
        if self._source is None or generation is None:
            generation = self._generation  # nothing to check it against: only expiries count
        if generation != self._generation:
            if generation != self.current_generation():
                return  # something changed since the caller read; its answer may be stale
            self._clear(generation)
        self._store(key, (value, self._weigh(key, value), expires_at))

    def clear(self) -> None:
        """Forget everything now (a signing key retired: verify every token again)."""
        self._clear(self._generation)

    def _clear(self, generation: int) -> None:
        self._reset()
        self._generation = generation


class KeyedGenerationCache(_BoundedCache[K, V, tuple[V, int, float | None, int]]):
    """A dict bounded by memory whose entries each follow their own key's generation (`generation(key)`:
    that of the key's repository, `interfaces.keyed_generation_of`, or of its tag,
    `interfaces.tag_generation_of`): an entry is not served once its generation moved, and an answer
    read across such a move is not kept. Nothing else is dropped, so a write to repository A keeps
    B's entries.

    Bounded like `GenerationCache` (`max_bytes`, `weigh`); when a put would pass the bound, the oldest
    64th goes (an entry expired or whose generation moved is dropped when a lookup finds it)."""

    def __init__(
        self,
        generation: KeyedGeneration,
        max_bytes: int = 4 * MIB,
        weigh: Callable[[K, V], int] = entry_weight,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(max_bytes, weigh, clock)  # entries: value, weight, expiry, the key's generation
        self._source = generation

    def current_generation(self, key: K) -> int:
        """Read before querying the source of truth; pass to `put`."""
        return self._source(key)

    def get(self, key: K) -> V | None:
        self.lookups += 1
        found = self._entries.get(key)
        if found is None:
            return None
        if found[3] != self._source(key):
            self._drop(key)
            return None
        expires_at = found[2]
        if expires_at is not None and self._clock is not None and self._clock() >= expires_at:
            self._drop(key)
            return None
        self.hits += 1
        return found[0]

    def put(self, key: K, value: V, generation: int, expires_at: float | None = None) -> None:
        if expires_at is not None and self._clock is None:
            raise ValueError(NO_CLOCK)
        if generation != self._source(key):
            return  # its repository (or tag) changed since the caller read; its answer may be stale
        self._store(key, (value, self._weigh(key, value), expires_at, generation))

    def clear(self) -> None:
        self._reset()
