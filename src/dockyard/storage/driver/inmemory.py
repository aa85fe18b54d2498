"""Bytes in a dict, for tests and throwaway registries. Thread-safe; nothing survives the process."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from typing import BinaryIO

from dockyard.errors import PathNotFound, StorageError
from dockyard.storage.driver.base import FileInfo, FileWriter, PathLock, delete_each
from dockyard.storage.driver.locks import ProcessLocks


class _Entry:
    """One file. `data` is immutable bytes once committed, a growing bytearray while a writer is open."""

    __slots__ = ("data", "modified")

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data
        self.modified = time.time()


class InMemoryDriver:
    """Files keyed by path; directories are implied by the files below them, as in an object store."""

    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._locks = ProcessLocks(exclusive=True)  # the whole store lives in this process

    def _entry(self, path: str) -> _Entry:
        entry = self._files.get(path)
        if entry is None:
            raise PathNotFound(f"path not found: {path}")
        return entry

    def _children(self, path: str) -> list[str]:
        """Every file path strictly below the directory path ("" is the root)."""
        prefix = path + "/" if path else ""
        return [key for key in self._files if key.startswith(prefix)]

    # --- reading ------------------------------------------------------------------------------
    def get_content(self, path: str) -> bytes:
        with self._lock:
            return bytes(self._entry(path).data)

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        if offset < 0:
            raise ValueError(f"negative read offset {offset}")
        stream = io.BytesIO(self.get_content(path))  # BytesIO shares the bytes: no copy
        stream.seek(offset)
        return stream

    def stat(self, path: str) -> FileInfo:
        with self._lock:
            entry = self._files.get(path)
            if entry is not None:
                return FileInfo(path, len(entry.data), entry.modified)
            below = [self._files[key].modified for key in self._children(path)]
        if not below:
            raise PathNotFound(f"path not found: {path}")
        return FileInfo(path, 0, max(below), is_dir=True)

    def list(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        with self._lock:
            below = self._children(path)
        if not below and path != "":
            raise PathNotFound(f"path not found: {path}")
        return sorted({prefix + key[len(prefix) :].split("/", 1)[0] for key in below})

    # --- writing ------------------------------------------------------------------------------
    def put_content(self, path: str, data: bytes) -> None:
        entry = _Entry(bytes(memoryview(data)))  # memoryview refuses non-bytes like ints
        with self._lock:
            self._files[path] = entry

    def writer(self, path: str, append: bool = False) -> FileWriter:
        with self._lock:
            if append:
                entry = self._entry(path)
                entry.data = bytearray(entry.data)
            else:
                entry = self._files[path] = _Entry(bytearray())
        return InMemoryFileWriter(self, path, entry)

    def move(self, source: str, dest: str) -> None:
        with self._lock:
            entry = self._entry(source)
            if source != dest:
                self._files[dest] = self._files.pop(source)
            entry.modified = time.time()

    def delete(self, path: str) -> None:
        with self._lock:
            doomed = self._children(path)
            if path in self._files:
                doomed.append(path)
            if not doomed:
                raise PathNotFound(f"path not found: {path}")
            for key in doomed:
                del self._files[key]

    def delete_files(self, paths: Sequence[str]) -> dict[str, Exception]:
        return delete_each(self.delete, paths)

    # --- direct access ------------------------------------------------------------------------
    def url_for(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        return None

    def local_path(self, path: str) -> str | None:
        return None

    def unlinked_writer(self, path: str) -> FileWriter | None:
        return None  # uploads lock their path and use `writer`

    def try_lock(self, path: str) -> PathLock | None:
        return self._locks.try_lock(path)


class InMemoryFileWriter:
    """Appends to the entry's bytearray; close/commit freeze it back to bytes."""

    def __init__(self, driver: InMemoryDriver, path: str, entry: _Entry) -> None:
        self._driver = driver
        self._path = path
        self._entry: _Entry | None = entry
        self._size = len(entry.data)

    @property
    def size(self) -> int:
        return self._size

    @property
    def fingerprint(self) -> str | None:
        return None  # writers exclude each other with try_lock

    def write(self, data: bytes) -> int:
        entry = self._entry
        if entry is None:
            raise StorageError(f"writer for {self._path} is already closed")
        length = memoryview(data).nbytes
        with self._driver._lock:
            assert isinstance(entry.data, bytearray)
            entry.data += data
            entry.modified = time.time()
        self._size += length
        return length

    def truncate(self, size: int) -> None:
        entry = self._entry
        if entry is None:
            raise StorageError(f"writer for {self._path} is already closed")
        if not 0 <= size <= self._size:
            raise ValueError(f"cannot truncate {self._path} to {size} bytes: it has {self._size}")
        with self._driver._lock:
            del entry.data[size:]  # type: ignore[union-attr]  # a bytearray while the writer is open
            entry.modified = time.time()
        self._size = size

    def close(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            with self._driver._lock:
                entry.data = bytes(entry.data)

    def commit(self) -> None:
        if self._entry is None:
            raise StorageError(f"writer for {self._path} is already closed")
        self.close()

    def commit_to(self, dest: str) -> None:
        self.commit()
        self._driver.move(self._path, dest)

    def cancel(self) -> None:
        self._entry = None
        with self._driver._lock:
            self._driver._files.pop(self._path, None)
