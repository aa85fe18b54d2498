"""The storage driver contract.

A driver stores opaque bytes at slash-separated relative paths ("blobs/sha256/ab/abcd.../data").
It knows nothing of digests, repositories, the DB or settings. Every driver passes the one
conformance suite in `dockyard.storage.driver.conformance`.

Drivers are synchronous: callers on the event loop run them in a worker thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from dockyard.errors import InvalidPath

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def check_path(path: str) -> str:
    """Refuse any path that could escape the driver's root: absolute, empty, `.`/`..` segments."""
    if not path or path.startswith("/") or path.endswith("/"):
        raise InvalidPath(f"invalid storage path {path!r}")
    for segment in path.split("/"):
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise InvalidPath(f"invalid storage path {path!r}")
    return path


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch
    is_dir: bool = False


@runtime_checkable
class FileWriter(Protocol):
    """An append-only writer to one path. Nothing is visible at the path until `commit()`
    for new files; appended bytes of a resumed writer survive `close()` without commit
    (that is how an upload spans several requests)."""

    @property
    def size(self) -> int:
        """Bytes in the file so far, including what was there before an append-resume."""
        ...

    def write(self, data: bytes) -> int: ...

    def close(self) -> None:
        """Flush and release, keeping what was written for a later `writer(path, append=True)`."""
        ...

    def commit(self) -> None:
        """Make the written bytes durable and readable at the path."""
        ...

    def cancel(self) -> None:
        """Discard everything written to this path."""
        ...


@runtime_checkable
class StorageDriver(Protocol):
    """Bytes at paths. Raises `PathNotFound` for missing paths, `InvalidPath` for bad ones."""

    name: str

    def get_content(self, path: str) -> bytes: ...

    def put_content(self, path: str, data: bytes) -> None:
        """Atomically replace the content at path: readers see the old or the new bytes."""
        ...

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        """A readable stream positioned at offset; the caller closes it."""
        ...

    def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer for path; with append, resume the bytes a previous writer closed."""
        ...

    def stat(self, path: str) -> FileInfo: ...

    def list(self, path: str) -> list[str]:
        """Direct children of a directory path, as full paths, sorted. `""` is the root."""
        ...

    def move(self, source: str, dest: str) -> None:
        """Atomically move source to dest, replacing dest."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file or a whole directory tree."""
        ...

    def url_for(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        """A URL a client may fetch directly (presigned), or None when the driver has none."""
        ...

    def local_path(self, path: str) -> str | None:
        """A local filesystem path for zero-copy sends, or None when the bytes are not local."""
        ...
