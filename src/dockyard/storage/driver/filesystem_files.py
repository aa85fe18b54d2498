"""The filesystem driver's files: how bytes are written, made durable and named (`FilesystemFileWriter`,
and `UnlinkedFileWriter` for bytes that have no name until they are whole), and the OS-level helpers
the driver shares with them (storage.driver.filesystem)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, BinaryIO

from dockyard.errors import PathNotFound, StorageError, StorageFull

if TYPE_CHECKING:
    from dockyard.storage.driver.filesystem import FilesystemDriver

# Chunks of at least this size go straight to write(2) without a copy; smaller writes are batched.
# (Measured: 64 KiB and 1 MiB buffers write 1 MiB chunks equally fast.)
WRITE_BUFFER_SIZE = 1 << 16
# A writer starts the disk writes of what it was given every WRITEBACK_EVERY bytes, without waiting for
# them (sync_file_range(2), SYNC_FILE_RANGE_WRITE), so the bytes go to disk while the next ones arrive
# and the fsync of the commit finds most of them written: it took 40-75 ms for a 64 MiB blob on the
# bench's VM, at the end of the push, when everything had waited for it. Durability still comes from
# that fsync alone. Once written, a blob's pages leave the page cache (posix_fadvise DONTNEED: the range
# started one step earlier, then the whole file after the commit's fsync), so a push reuses the pages
# the previous one freed: on the bench's VM a write(2) into pages the kernel had never handed out
# cost 2.0-2.3 ms per MiB, into reused ones 0.25 (the first pull of a new blob reads it from disk).
WRITEBACK_EVERY = 4 << 20
_SYNC_FILE_RANGE_WRITE = 2
# `~` is not allowed in a path segment, so a temp name never collides with a stored path and
# `list` can skip leftovers of a crash.
TEMP_MARKER = ".~tmp-"
# No room: the filesystem is full, or the user's disk quota is used up.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Blobs of private projects are nobody else's business: files 0600, directories 0700 (whatever the umask).
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


@contextlib.contextmanager
def os_errors(path: str) -> Iterator[None]:
    """Translate the OS's errors into the contract's."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise PathNotFound(f"path not found: {path}") from exc
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise StorageFull() from exc
        raise StorageError(f"storage error on {path}: {exc.strerror or exc}") from exc


def _no_writeback(fd: int, offset: int, length: int) -> None:
    pass


def _load_writeback() -> Callable[[int, int, int], None]:
    """sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) through the C library (Linux); a
    no-op where there is none. Only a hint: its failures are ignored."""
    try:
        import ctypes

        function = ctypes.CDLL(None).sync_file_range  # ctypes releases the GIL around the call
    except (OSError, AttributeError):
        return _no_writeback
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start_writeback


_WRITEBACK: list[Callable[[int, int, int], None]] = []


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if not _WRITEBACK:
        _WRITEBACK.append(_load_writeback())
    _WRITEBACK[0](fd, offset, length)


# Where an `O_TMPFILE` inode is linked from (`UnlinkedFileWriter`).
HAS_PROC_FDS = os.path.isdir("/proc/self/fd")


def _drop_cached(fd: int, offset: int, length: int) -> None:
    """Let the kernel drop a file's cached pages in the range (all of it with length 0) that are on
    disk already; it skips those still being written. Only a hint: its failures are ignored."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def fsync_dir(directory: str) -> None:
    """Make a rename or a new directory entry in directory durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Threads that fsync a new name's directory (and the parents of directories made for it) while the
# committing thread fsyncs the file (`synced_together`): each fsync waits for its own disk flush (on the
# bench's VM 0.5-5 ms each, the larger part of a 1 MiB push's wall), and nothing orders them, only all
# before the blob is recorded.
# Made on first use by each process (a forked worker makes its own: the parent's threads are not in it).
_DIRECTORY_SYNCS = 4
SYNC_THREAD_PREFIX = "fs-sync"  # the pool is the process's for good, reused by every later commit
_SYNC_THREADS: list[tuple[int, ThreadPoolExecutor]] = []
_SYNC_THREADS_LOCK = threading.Lock()


def _sync_threads() -> ThreadPoolExecutor:
    with _SYNC_THREADS_LOCK:
        if not _SYNC_THREADS or _SYNC_THREADS[0][0] != os.getpid():
            pool = ThreadPoolExecutor(max_workers=_DIRECTORY_SYNCS, thread_name_prefix=SYNC_THREAD_PREFIX)
            _SYNC_THREADS[:] = [(os.getpid(), pool)]
        return _SYNC_THREADS[0][1]


def synced_together(directories: Sequence[str], fd: int | None = None) -> None:
    """fsync the file `fd` (if given) and each of `directories` at the same time: the file's (with no
    file, the first directory's) here, the other directories' in sync threads; all are on the disk
    when this returns. A directory whose thread has not started by the time this thread is done (no
    sync thread was free: many commits at once) is fsynced here, after the file's: never later. One
    directory and no file: just its fsync, here. A directory named twice is fsynced once."""
    directories = list(dict.fromkeys(directories))
    if fd is None:
        first, rest = directories[0], directories[1:]

        def here() -> None:
            fsync_dir(first)
    else:
        rest = directories

        def here() -> None:
            os.fsync(fd)

    if not rest:
        here()
        return
    pool = _sync_threads()
    syncs: list[tuple[str, Future[None]]] = [
        (directory, pool.submit(fsync_dir, directory)) for directory in rest
    ]
    try:
        here()
    except BaseException:
        for _, sync in syncs:
            if not sync.cancel():
                wait([sync])
        raise
    for directory, sync in syncs:
        if sync.cancel():  # not started: no thread was free
            fsync_dir(directory)
        else:
            sync.result()


class FilesystemFileWriter:
    """Writes through a buffered file straight at the path; only `commit` pays for fsync."""

    def __init__(
        self,
        driver: FilesystemDriver,
        path: str,
        full: str,
        file: BinaryIO,
        created: bool,
        new_entries: Sequence[str] = (),
    ) -> None:
        self._driver = driver
        self._path = path
        self._full = full
        self._file: BinaryIO | None = file
        self._created = created
        # The parents of the directories made for the file (`FilesystemDriver._in_parent`): `commit`
        # fsyncs them with the file's directory, for its name to survive a power cut.
        self._new_entries = list(new_entries)
        self._size = os.fstat(file.fileno()).st_size
        self._written_back = self._size  # where the writes not yet started (WRITEBACK_EVERY) begin
        self._dropped = self._size  # where the pages not yet dropped from the cache begin

    @property
    def size(self) -> int:
        return self._size

    @property
    def fingerprint(self) -> str | None:
        return None  # writers exclude each other with try_lock

    def _open_file(self) -> BinaryIO:
        if self._file is None:
            raise StorageError(f"writer for {self._path} is already closed")
        return self._file

    def write(self, data: bytes) -> int:
        file = self._open_file()
        length = memoryview(data).nbytes
        with os_errors(self._path):
            file.write(data)
        self._size += length
        if self._size - self._written_back >= WRITEBACK_EVERY:
            fd = file.fileno()
            _start_writeback(fd, self._written_back, self._size - self._written_back)
            if self._written_back > self._dropped:  # the range started last time: on disk by now, mostly
                _drop_cached(fd, self._dropped, self._written_back - self._dropped)
                self._dropped = self._written_back
            self._written_back = self._size
        return length

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        with os_errors(self._path):
            try:
                # A chunk's last bytes (up to WRITEBACK_EVERY) would otherwise wait for the commit's
                # fsync: with 8 MiB PATCHes, half of a blob was written only then, while the PUT waited.
                file.flush()
                self._start_rest(file.fileno())
            finally:
                file.close()

    def _start_rest(self, fd: int) -> None:
        """Start the disk writes of the bytes not started yet, and let the range started before leave
        the cache, as `write` does every WRITEBACK_EVERY bytes."""
        if self._size > self._written_back:
            _start_writeback(fd, self._written_back, self._size - self._written_back)
        if self._written_back > self._dropped:
            _drop_cached(fd, self._dropped, self._written_back - self._dropped)
        self._dropped = self._written_back
        self._written_back = self._size

    def commit(self) -> None:
        self._sync_and_close()
        with os_errors(self._path):
            if self._created:  # the new directory entry must survive a crash too, and those above it
                directory = os.path.dirname(self._full)
                synced_together([directory, *self._new_entries])

    def commit_to(self, dest: str) -> None:
        dest_full = self._driver._full(dest)  # refuses a bad dest before anything changes
        self._sync_and_close()
        directory = os.path.dirname(dest_full)
        new_entries: list[str] = []
        with os_errors(self._path):
            if dest_full != self._full:
                self._driver._in_parent(dest_full, lambda: os.replace(self._full, dest_full), new_entries)
            # the upload's own directories (`_new_entries`) need not be durable: its name leaves them
            synced_together([directory, *new_entries])
        if dest_full != self._full:
            self._driver._prune(os.path.dirname(self._full))

    def truncate(self, size: int) -> None:
        file = self._open_file()
        if not 0 <= size <= self._size:
            raise ValueError(f"cannot truncate {self._path} to {size} bytes: it has {self._size}")
        with os_errors(self._path):
            file.flush()
            os.ftruncate(file.fileno(), size)
            file.seek(size)  # for a descriptor opened without O_APPEND
        self._size = size
        self._written_back = min(self._written_back, size)
        self._dropped = min(self._dropped, size)

    def _sync_and_close(self) -> None:
        file = self._open_file()
        self._file = None
        with os_errors(self._path):
            try:
                file.flush()
                os.fsync(file.fileno())
                _drop_cached(file.fileno(), 0, 0)
            finally:
                file.close()

    def cancel(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._full)
        self._driver._prune(os.path.dirname(self._full))


class UnlinkedFileWriter(FilesystemFileWriter):
    """A `FilesystemFileWriter` whose file has no name until it finishes (`unlinked_writer`). Its bytes
    get one by a hard link of the open descriptor (`linkat` through `/proc/self/fd`), made only once
    they are all written: at the content address (`commit_to`), or at its path (`close`, `commit`)
    when they are to be resumed or hashed there. A crash or `cancel` before that leaves nothing."""

    def close(self) -> None:
        if self._file is None:
            return
        self._name_at_path(durable=False)

    def commit(self) -> None:
        self._name_at_path(durable=True)

    def commit_to(self, dest: str) -> None:
        """Named at dest, then fsynced (the inode's link count must reach the disk too: fsynced while
        it had no name, it would be found unlinked after a power cut) while dest's directory is fsynced
        in another thread: both before this returns, and so before the blob is recorded. Named
        before its fsync, the bytes are whole in the page cache, and what a power cut could leave at
        dest has no blob row yet (that comes after this): the next commit of the digest replaces it.
        A file already at dest (maybe another commit's, with its row) is replaced only by bytes on
        disk: linked at a temp name, fsynced, renamed over it, as `move` does."""
        dest_full = self._driver._full(dest)  # refuses a bad dest before anything changes
        directory = os.path.dirname(dest_full)
        file = self._open_file()
        self._file = None
        new_entries: list[str] = []
        with os_errors(self._path):
            try:
                file.flush()
                fd = file.fileno()
                linked = self._driver._in_parent(
                    dest_full, lambda: _link_or_replace(fd, dest_full), new_entries
                )
                # The directories whose entries are new: its name's, and the parents of those made for it.
                directories = [directory, *new_entries]
                if linked:
                    synced_together(directories, fd)  # the file and its new names, at once
                else:  # replaced: the file was fsynced before the rename, then the rename's directory
                    synced_together(directories)
                _drop_cached(fd, 0, 0)
            finally:
                file.close()

    def cancel(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()  # its last reference: the inode goes, nothing was ever named

    def _name_at_path(self, durable: bool) -> None:
        """Link the bytes at the writer's own path, which nobody else's bytes may hold."""
        file = self._open_file()
        self._file = None
        with os_errors(self._path):
            try:
                self._full = self._driver._full(self._path)  # refused outside the root: nothing named
                file.flush()
                new_entries: list[str] = []
                try:
                    self._driver._in_parent(self._full, lambda: _link(file.fileno(), self._full), new_entries)
                except FileExistsError:
                    raise StorageError(f"another writer's bytes are at {self._path}") from None
                if durable:  # after the link, so that the link count is on disk too; with its names
                    directory = os.path.dirname(self._full)
                    synced_together([directory, *new_entries], file.fileno())
            finally:
                file.close()


def _link(fd: int, dest: str) -> None:
    """Give the open file `fd` the name dest (FileExistsError if taken). `linkat` of its
    /proc/self/fd entry with AT_SYMLINK_FOLLOW, which needs no privilege; `os.link` passes the flag
    only when given a directory descriptor (without one it calls link(2), which does not follow)."""
    proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), dest, src_dir_fd=proc_fds, follow_symlinks=True)
    finally:
        os.close(proc_fds)


def _link_or_replace(fd: int, dest: str) -> bool:
    """Give the open file `fd` the name dest: True if dest was free (nothing fsynced yet); False if a
    file there was replaced, only once `fd` was on the disk (`_replace_synced`)."""
    try:
        _link(fd, dest)
    except FileExistsError:
        _replace_synced(fd, dest)
        return False
    return True


def _replace_synced(fd: int, dest: str) -> None:
    """Put the open file `fd` at dest in place of the file there, only once it is on the disk: a link
    at a temp name, the fsync, then a rename over it."""
    temp = f"{dest}{TEMP_MARKER}{secrets.token_hex(8)}"
    _link(fd, temp)
    try:
        os.fsync(fd)
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
