"""The running hash of each upload this process wrote the bytes of, by upload id and size.

hashlib state cannot be saved, so it lives here only: a process that missed a chunk has no entry at
that size, and the commit hashes the temp object in storage instead (see storage.uploads). One of the
upload store's three per-process caches, each behind a lock of its own (the others: held_writers).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from dockyard.content.digest import CANONICAL_ALGORITHM, new_hasher

KEPT = 4096  # uploads whose hash one process remembers (the oldest go first)


class RunningHashes:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._entries: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, upload_id: str, size: int, hasher: Any) -> None:
        """The hash of the upload's first `size` bytes (None: nothing to remember)."""
        if hasher is None:
            return
        with self._lock:
            self._entries[upload_id] = (size, hasher)
            self._entries.move_to_end(upload_id)
            while len(self._entries) > self._kept:
                self._entries.popitem(last=False)

    def take(self, upload_id: str, offset: int) -> Any:
        """The hasher to continue at `offset` (a new one at 0), or None when this process has none."""
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        if offset == 0:
            return new_hasher(CANONICAL_ALGORITHM)
        if entry is not None and entry[0] == offset:
            return entry[1]
        return None  # this process missed earlier chunks: the commit re-hashes from storage

    def peek(self, upload_id: str, offset: int) -> Any:
        """A copy of the hash of the first `offset` bytes, or None."""
        with self._lock:
            entry = self._entries.get(upload_id)
        if entry is not None and entry[0] == offset:
            return entry[1].copy()
        return None

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)
