"""A small bounded cache whose entries expire: remembered token verifications and logins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Keys are digests (never the secrets themselves). When full, expired entries go first, then the
    oldest half. Not locked: a lost update under a race only costs one more verification."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[bytes, tuple[float, V]] = {}

    def get(self, key: bytes) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: bytes, value: V, expires_at: float) -> None:
        if len(self._entries) >= self.max_entries:
            now = self.clock()
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries = dict(list(self._entries.items())[len(self._entries) // 2 :])
        self._entries[key] = (expires_at, value)

    def __len__(self) -> int:
        return len(self._entries)
