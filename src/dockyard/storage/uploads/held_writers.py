"""Two of the upload store's per-process caches, each behind a lock of its own (the third is
running_hashes):

- `HeldWriters`: the writer (with the upload's lock) a request's last bytes went to, kept open from the
  end of its body to its commit -- milliseconds, so the commit can land them straight at the content
  address (see the package docstring). One only outlives its request when the commit failed before it
  got to storage; past `HELD_WRITERS` the oldest is closed to its sidecar, as a PATCH would have left it.
- `Settled`: uploads whose bytes such a writer landed: no temp object is left to delete after the commit.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

from dockyard.errors import DockyardError
from dockyard.storage.driver.base import FileWriter, PathLock
from dockyard.storage.uploads.running_hashes import KEPT

HELD_WRITERS = 64


class HeldWriters:
    def __init__(self, kept: int = HELD_WRITERS) -> None:
        self._kept = kept
        self._held: OrderedDict[str, tuple[int, FileWriter, PathLock]] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, upload_id: str, size: int, writer: FileWriter, lock: PathLock) -> None:
        """Keep the writer of an upload's first `size` bytes (and its lock) for the commit."""
        with self._lock:
            self._held[upload_id] = (size, writer, lock)
            evicted = []
            while len(self._held) > self._kept:
                evicted.append(self._held.popitem(last=False)[1])
        for _, old, old_lock in evicted:
            close_quietly(old, old_lock)

    def take(self, upload_id: str, size: int) -> tuple[FileWriter | None, PathLock | None]:
        """The held writer of the upload's first `size` bytes, with its lock; (None, None) if none. One
        of other bytes is closed to its sidecar: it is not what this commit is about, a resume may be."""
        with self._lock:
            held_size, writer, lock = self._held.pop(upload_id, (None, None, None))
        if writer is not None and held_size != size:
            close_quietly(writer, lock)
            return None, None
        return writer, lock

    def close(self, upload_id: str) -> None:
        """Close a held writer to its sidecar, keeping its bytes, and let the upload's next request in."""
        with self._lock:
            _, writer, lock = self._held.pop(upload_id, (None, None, None))
        close_quietly(writer, lock)

    def drop(self, upload_id: str) -> None:
        """Cancel a held writer, dropping its bytes (the upload is cancelled)."""
        with self._lock:
            _, writer, lock = self._held.pop(upload_id, (None, None, None))
        try:
            if writer is not None:
                with contextlib.suppress(DockyardError):
                    writer.cancel()
        finally:
            if lock is not None:
                lock.release()


class Settled:
    """Upload ids whose bytes a held writer landed (the newest `KEPT`)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, upload_id: str) -> None:
        with self._lock:
            self._ids[upload_id] = None
            while len(self._ids) > self._kept:
                self._ids.popitem(last=False)

    def pop(self, upload_id: str) -> bool:
        """Whether the upload was settled (forgotten now)."""
        with self._lock:
            return self._ids.pop(upload_id, "no") is None


def close_quietly(writer: FileWriter | None, lock: PathLock | None) -> None:
    try:
        if writer is not None:
            with contextlib.suppress(DockyardError):
                writer.close()
    finally:
        if lock is not None:
            lock.release()
