"""`StorageDriver.try_lock` for drivers whose locks only this process can see (in-memory, S3)."""

from __future__ import annotations

import threading


class ProcessLocks:
    """Exclusive locks by path among the threads of this process."""

    def __init__(self, exclusive: bool) -> None:
        self._exclusive = exclusive
        self._held: set[str] = set()
        self._mutex = threading.Lock()

    def try_lock(self, path: str) -> HeldPath | None:
        with self._mutex:
            if path in self._held:
                return None
            self._held.add(path)
        return HeldPath(self, path, self._exclusive)

    def _give_back(self, path: str) -> None:
        with self._mutex:
            self._held.discard(path)


class HeldPath:
    def __init__(self, locks: ProcessLocks, path: str, exclusive: bool) -> None:
        self._locks: ProcessLocks | None = locks
        self._path = path
        self.exclusive = exclusive

    def release(self) -> None:
        locks, self._locks = self._locks, None
        if locks is not None:
            locks._give_back(self._path)
