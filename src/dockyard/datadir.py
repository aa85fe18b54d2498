"""Files in the data directory: private to the user dockyard runs as, and allocated before they are mapped.

Privacy: the data directory holds the database (password hashes, the token signing keys), the blobs of
private projects, the generated admin password and the session secret. Like PostgreSQL, dockyard sets
the umask to 077 (files 0600, directories 0700) in every server-side process and checks the directory
at start (`secure`).

Allocation: the node's processes share small memory-mapped files under `<datadir>/run` (drain counts,
the change feed, metrics). A store through a map into a *hole* of a sparse file needs a block at that
moment; on a full disk there is none and the kernel kills the process with SIGBUS. So every mapped
byte is allocated first (`allocate`), where a full disk is an ordinary OSError.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("dockyard.datadir")

PRIVATE_UMASK = 0o077
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# Top-level entries that must be private: the SQLite database and its journals, secrets, run files.
_SENSITIVE = (
    "*.db",
    "*.db-wal",
    "*.db-shm",
    "*.db-journal",
    "admin-password",
    "session-secret",
    "signing-key-secret",
    "run",
    "storage",
)


def allocate(fd: int, size: int) -> None:
    """Give the first `size` bytes of the open file real blocks (extending it if shorter), so stores
    through a memory map of them never fault. Raises OSError (ENOSPC) when the disk cannot hold them.

    posix_fallocate reserves the blocks without writing; on a filesystem without fallocate, glibc
    writes a zero into each block that is still a hole instead."""
    os.posix_fallocate(fd, 0, size)


def map_file(path: Path, size: int, *, truncate: bool = False) -> mmap.mmap:
    """A shared read-write map of the first `size` bytes of `path` (created 0600, emptied first when
    `truncate`), allocated before it is mapped. Raises OSError when the disk cannot hold it."""
    path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        allocate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def private_umask() -> None:
    """Files and directories this process (and its children) create are its user's only."""
    os.umask(PRIVATE_UMASK)


class InsecureDataDirectory(Exception):
    """The data directory is readable by others and cannot be made private."""


def secure(datadir: Path, directories: Sequence[Path] = (), files: Sequence[Path] = ()) -> list[str]:
    """Create the data directory 0700, or make an existing one private: its mode, the modes of the
    files in it that hold secrets, and of `directories` (a storage root elsewhere) and `files` (a
    SQLite database elsewhere) that exist. Returns what was changed (for a warning); raises
    InsecureDataDirectory when one stays open to other users (owned by someone else).

    Like PostgreSQL, which refuses a group- or world-readable data directory, but an existing
    installation is fixed rather than refused: its directory was made by an older version."""
    datadir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    changed: list[str] = []
    for directory in (datadir, *directories):
        if directory.is_dir():
            _make_private(directory, DIRECTORY_MODE, changed)
    sensitive = [path for pattern in _SENSITIVE for path in sorted(datadir.glob(pattern))]
    for path in (*sensitive, *files):
        if path.exists():
            _make_private(path, DIRECTORY_MODE if path.is_dir() else FILE_MODE, changed)
    return changed


def _make_private(path: Path, mode: int, changed: list[str]) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        info = path.stat()
    current = stat.S_IMODE(info.st_mode)
    if current & 0o077 == 0:
        return
    try:
        os.chmod(path, current & ~0o077 | (mode & 0o700))
    except OSError as exc:  # not ours (EPERM), or on a read-only filesystem
        if current & 0o007:
            raise InsecureDataDirectory(
                f"{path} is mode {current:04o}: other users can read it, and it cannot be made private "
                f"({exc.strerror}): run `chmod {mode:o} {path}` as its owner (uid {info.st_uid}) "
                "and start again"
            ) from None
        # Group access only, on a directory we cannot change (a volume mounted with a group, as
        # Kubernetes' fsGroup does): what we create in it is still private.
        log.warning("%s is mode %04o (its group may read it) and cannot be changed", path, current)
        return
    changed.append(f"{path}: {current:04o} -> {current & ~0o077 | (mode & 0o700):04o}")
