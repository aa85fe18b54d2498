"""A small bounded cache whose entries expire: remembered token verifications and logins.

With a `generation` source (a number that moves whenever accounts, credentials, roles or signing
keys change anywhere: the change feed's AUTH topic, wired in `dockyard.app`), the cache also
forgets everything as soon as that number moves, so a revocation made on another node or worker
takes effect here within the feed's delay instead of the entries' time to live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
Generation = Callable[[], int]


class TTLCache(Generic[V]):
    """Keys are digests (never the secrets themselves) or tuples of public values. When full, expired
    entries go first, then the oldest half. Not locked: a lost update under a race only costs one
    more verification."""

    def __init__(
        self, max_entries: int, clock: Callable[[], float], generation: Generation | None = None
    ) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self.generation = generation
        self._seen = generation() if generation is not None else 0
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def current_generation(self) -> int:
        """Note this before computing a value; pass it to `put`, which drops a value computed across
        a change (e.g. a password check that started before the account was disabled)."""
        return self.generation() if self.generation is not None else 0

    def get(self, key: Hashable) -> V | None:
        self._follow_generation()
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: Hashable, value: V, expires_at: float, generation: int | None = None) -> None:
        self._follow_generation()
        if generation is not None and self.generation is not None and generation != self._seen:
            return  # something changed while the value was computed: it may be stale already
        if len(self._entries) >= self.max_entries:
            now = self.clock()
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries = dict(list(self._entries.items())[len(self._entries) // 2 :])
        self._entries[key] = (expires_at, value)

    def clear(self) -> None:
        self._entries = {}

    def _follow_generation(self) -> None:
        if self.generation is None:
            return
        now = self.generation()
        if now != self._seen:
            self._entries = {}
            self._seen = now

    def __len__(self) -> int:
        return len(self._entries)


def remembered_key(client_ip: str | None, credentials: bytes) -> bytes:
    """What a success is remembered under: per address, so the login limits of others still hold."""
    return hashlib.sha256((client_ip or "").encode() + b"\0" + credentials).digest()
