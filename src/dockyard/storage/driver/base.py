"""The storage driver contract.

A driver stores opaque bytes at slash-separated relative paths ("blobs/sha256/ab/abcd.../data").
It knows nothing of digests, repositories, the DB or settings. Every driver passes the one
conformance suite in `dockyard.storage.driver.conformance`.

Directories are implicit: a directory exists while some file exists below it (drivers that keep
real directories prune the empty ones), so object stores and local disks behave alike.

Drivers are synchronous: callers on the event loop run them in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from dockyard.errors import InvalidPath, PathNotFound

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
MAX_SEGMENT_LENGTH = 255  # a file name on every local filesystem we run on
MAX_PATH_LENGTH = 1024  # the S3 key limit


def is_valid_segment(segment: str) -> bool:
    """One path component: ASCII letters, digits, `.`, `_`, `-`; never `.` or `..`."""
    return (
        0 < len(segment) <= MAX_SEGMENT_LENGTH
        and segment not in (".", "..")
        and _SEGMENT.fullmatch(segment) is not None
    )


def check_path(path: str) -> str:
    """Refuse any path that could escape the driver's root or name something odd.

    Valid: relative, non-empty, no empty/`.`/`..` segments (so no `//`, leading or trailing `/`),
    ASCII-only segments (no NUL, no look-alike Unicode). Returns path unchanged.
    """
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"invalid storage path {path!r}")
    if not all(is_valid_segment(segment) for segment in path.split("/")):
        raise InvalidPath(f"invalid storage path {path!r}")
    return path


def delete_each(delete: Callable[[str], None], paths: Sequence[str]) -> dict[str, Exception]:
    """`StorageDriver.delete_files` for a driver with nothing cheaper than a `delete` per path."""
    failed: dict[str, Exception] = {}
    for path in paths:
        try:
            delete(path)
        except PathNotFound:
            pass
        except Exception as exc:
            failed[path] = exc
    return failed


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int  # bytes; 0 for a directory
    modified: float  # seconds since the epoch
    is_dir: bool = False


@runtime_checkable
class FileWriter(Protocol):
    """An append-only writer to one path (one writer per path at a time).

    Bytes written are at the path (or, for object stores, pending) until commit makes them
    durable. So before `commit()`, what `stat`/`get_content`/`open_read`/`list` show of the path is
    up to the driver: a local disk may show partial bytes, an object store nothing at all. Write
    only to paths nobody reads yet (uploads), `move` into place after commit, and track progress
    with `size`, never with `stat`.

    `close()` keeps what was written, so a later `writer(path, append=True)` -- another request,
    another process, another node -- resumes it; to drop a closed writer's bytes, resume it and
    `cancel()`. After `close`, `commit` or `cancel` the writer is finished: further writes raise
    StorageError.
    """

    @property
    def size(self) -> int:
        """Bytes in the file so far, including what was there before an append-resume."""
        ...

    @property
    def fingerprint(self) -> str | None:
        """After `close`, and on a writer that resumed: a token of the state a resume continues from,
        different whenever another writer closed other bytes at the path. None where writers of one path
        exclude each other (`StorageDriver.try_lock` is exclusive) or there is nothing to tell."""
        ...

    def write(self, data: bytes) -> int:
        """Append all of data; return its length. Drivers also take any bytes-like object
        (bytearray, memoryview) so callers need not copy."""
        ...

    def close(self) -> None:
        """Flush and release, keeping what was written for a later `writer(path, append=True)`.
        A no-op on a finished writer."""
        ...

    def commit(self) -> None:
        """Make the written bytes durable and readable at the path, and finish the writer."""
        ...

    def commit_to(self, dest: str) -> None:
        """`commit()` then `move(path, dest)` in one step, and cheaper on object stores: the bytes
        become durable and readable at dest -- atomically, replacing dest, creating its parents -- and
        the writer finishes. Nothing the writer (or the writers it resumed) wrote stays at its own path:
        no pending state to resume, no file. For uploads whose digest is checked before they land."""
        ...

    def cancel(self) -> None:
        """Discard everything at this path (including bytes from before an append-resume)."""
        ...

    def truncate(self, size: int) -> None:
        """Drop every byte past `size` (at most `self.size`), including bytes from before an
        append-resume; later writes continue from there. For bytes a crashed writer left past what
        was recorded. StorageError where the driver cannot (S3, once they are in uploaded parts)."""
        ...


@runtime_checkable
class PathLock(Protocol):
    """An exclusive lock taken with `StorageDriver.try_lock`."""

    # True: no other holder can exist anywhere that can write the path (every process on a local
    # disk; the one process of an in-memory store). False: only this process is excluded (S3).
    exclusive: bool

    def release(self) -> None:
        """Let the next holder in; a no-op after the first call."""
        ...


@runtime_checkable
class StorageDriver(Protocol):
    """Bytes at paths. Every method raises `InvalidPath` for a path `check_path` refuses and
    `PathNotFound` for a missing one; other backend failures raise `StorageError`. The path check is
    the base wrapper's (`checked.CheckedDriver`, which `build_driver` puts around every driver): a
    driver itself is handed checked paths only."""

    name: str

    def get_content(self, path: str) -> bytes:
        """The whole file at path (meant for small files)."""
        ...

    def put_content(self, path: str, data: bytes) -> None:
        """Atomically replace the content at path: readers see the old or the new bytes, never a mix.
        Creates parent directories. Like `FileWriter.write`, takes any bytes-like data."""
        ...

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        """A readable stream positioned at offset (past the end reads empty); the caller closes it."""
        ...

    def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer for path. Without append, path starts empty (created with its parents, or
        truncated); with append, resume the bytes a previous writer closed (PathNotFound if none)."""
        ...

    def stat(self, path: str) -> FileInfo:
        """Size and modification time of a file, or `is_dir=True` for a directory."""
        ...

    def list(self, path: str) -> list[str]:
        """Direct children (files and directories) of a directory path, as full paths, sorted.
        `""` is the root (an empty root lists `[]`); a missing directory raises PathNotFound."""
        ...

    def move(self, source: str, dest: str) -> None:
        """Atomically move the file source to dest, replacing dest and creating its parents."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file or a whole directory tree."""
        ...

    def delete_files(self, paths: Sequence[str]) -> dict[str, Exception]:
        """Delete many files (garbage collection's blobs) as `delete` would each, for less than a
        `delete` each where the driver can: a missing one is no error, and the directories left empty
        go. Returns the paths that could not be deleted, with why. Raises InvalidPath, before deleting
        anything, when `check_path` refuses one of them."""
        ...

    def url_for(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        """A URL a client may fetch directly (presigned), or None when the driver has none."""
        ...

    def local_path(self, path: str) -> str | None:
        """An absolute local filesystem path for zero-copy sends, or None when the bytes are not
        local. Does not check that the file exists (callers `stat` first)."""
        ...

    def unlinked_writer(self, path: str) -> FileWriter | None:
        """A writer for a new file at `path` whose bytes have no name until it finishes: a crash or a
        `cancel` leaves nothing anywhere, and nobody sees them meanwhile, so the writer needs no lock
        of `path`. `commit_to` lands them as any writer's; `close` and `commit` put them at `path`,
        which must be empty then (StorageError, the bytes dropped, if another writer's are there).
        None where the driver has no such writer (the caller locks `path` and uses `writer`)."""
        ...

    def try_lock(self, path: str) -> PathLock | None:
        """Take the exclusive lock on the directory `path` (created if missing) without waiting: the
        lock, or None while another holder has it. It guards nothing by itself: writers that take it
        around their writes below `path` exclude each other (as far as `PathLock.exclusive` says).
        A holder's lock ends with its process, so a crash never leaves it taken."""
        ...
