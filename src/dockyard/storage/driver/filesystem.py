"""Bytes in a directory tree on a local disk (the embedded default, like registry:2's filesystem driver)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import secrets
import shutil
import stat as stat_module
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from dockyard.errors import InvalidPath, PathNotFound, StorageError
from dockyard.storage.driver.base import FileInfo, FileWriter, PathLock, is_valid_segment
from dockyard.storage.driver.filesystem_files import (
    DIRECTORY_MODE,
    FILE_MODE,
    HAS_PROC_FDS,
    TEMP_MARKER,
    WRITE_BUFFER_SIZE,
    FilesystemFileWriter,
    UnlinkedFileWriter,
    os_errors,
    synced_together,
)

T = TypeVar("T")

# Opens a path without opening the file (no read or write access needed, no side effects on a FIFO or
# device), for the kernel to resolve its links.
_PATH_FLAGS = getattr(os, "O_PATH", 0) | os.O_NOFOLLOW | os.O_CLOEXEC
_DELETED = " (deleted)"
# The driver's own reference: a test that refuses the long way patches this one, not `os.path` for every
# thread of the process.
_realpath = os.path.realpath


def _resolved(joined: str) -> str | None:
    """`os.path.realpath(joined)` for the common case, resolved by the kernel in one `open`: the
    links on the way are followed by it, and `/proc/self/fd` names where the descriptor ended up
    (realpath walks the path in Python, an `lstat` per component: ~8 per call under a typical root,
    ~25 per push). A path that does not exist yet (a new upload, a blob's new directory) is its
    parent's resolution plus its own name. None whenever that shortcut does not apply -- the last
    component is a link (O_NOFOLLOW opened the link itself), a component is `.` or `..`, a loop, no
    O_PATH or no /proc -- and the caller resolves the long way."""
    if not _PATH_FLAGS & getattr(os, "O_PATH", 0):
        return None
    missing: list[str] = []
    current = joined
    while True:
        try:
            fd = os.open(current, _PATH_FLAGS)
        except FileNotFoundError:
            parent, _, name = current.rpartition("/")
            if not parent or name in ("", ".", ".."):
                return None
            missing.append(name)
            current = parent
            continue
        except OSError:
            return None
        try:
            if stat_module.S_ISLNK(os.fstat(fd).st_mode):
                return None  # a link at the end of the path: realpath follows it
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)
        if not real.startswith("/") or real.endswith(_DELETED):
            return None  # not a path (an anonymous inode), or gone since the open: the long way
        if missing:
            missing.reverse()
            real = real.rstrip("/") + "/" + "/".join(missing)
        return real


def _make_directories(directory: str, new_entries: list[str]) -> None:
    """`os.makedirs(directory, exist_ok=True)` that adds to new_entries the parent of each directory
    it made (top-down; one already there, or made meanwhile by someone else, is not its). One mkdir
    when the directory is there already (makedirs: a stat and a mkdir, and another stat when it is).
    FileNotFoundError if a prune removed a directory on the way meanwhile (`_in_parent` retries)."""
    missing: list[str] = []
    current = directory
    while True:
        try:
            os.mkdir(current, DIRECTORY_MODE)
        except FileExistsError:
            break
        except FileNotFoundError:
            parent = os.path.dirname(current)
            if parent == current:
                raise
            missing.append(current)
            current = parent
            continue
        _add_entry(new_entries, os.path.dirname(current))
        break
    for below in reversed(missing):  # below the highest one there (or made): made top-down
        try:
            os.mkdir(below, DIRECTORY_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else, who makes it durable
        _add_entry(new_entries, os.path.dirname(below))


def _add_entry(new_entries: list[str], directory: str) -> None:
    if directory not in new_entries:  # a retry of `_in_parent` may make the same directory again
        new_entries.append(directory)


class FilesystemDriver:
    """Every path is resolved under root; anything resolving outside it (symlinks included) is refused."""

    name = "filesystem"

    def __init__(self, root: Path | str) -> None:
        Path(root).mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        self.root = _realpath(root)

    # --- path handling ------------------------------------------------------------------------
    def _full(self, path: str) -> str:
        """The absolute path for a valid relative path, refusing a symlink that leads out of root."""
        inside = self.root + os.sep
        full = _resolved(inside + path)
        if full is None:  # something odd on the way (a link at the end, a loop, no /proc): the long way
            full = _realpath(os.path.join(self.root, path))
        if not full.startswith(inside):
            raise InvalidPath(f"storage path {path!r} resolves outside the storage root")
        return full

    def _prune(self, directory: str) -> None:
        """Remove now-empty directories from directory up to (not including) the root."""
        while directory != self.root and directory.startswith(self.root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:  # not empty (or already gone, or a concurrent writer): stop here
                return
            directory = os.path.dirname(directory)

    @staticmethod
    def _in_parent(full: str, action: Callable[[], T], new_entries: list[str] | None = None) -> T:
        """Run action after creating full's parent, retrying if a concurrent prune removed it. With
        `new_entries`, the parent of each directory this call made (not one found there, made by
        someone else) is added to it, top-down: the directories whose new entries must be fsynced too
        (POSIX: a new directory's name is durable once its parent is) for a name made in it to
        survive a power cut. Full's own directory is among them only if a directory was made in it."""
        for attempt in range(3):
            try:
                if new_entries is None:
                    # makedirs itself can lose the race: a prune may remove an ancestor between
                    # makedirs checking that it exists and creating the child below it.
                    os.makedirs(os.path.dirname(full), mode=DIRECTORY_MODE, exist_ok=True)
                else:
                    _make_directories(os.path.dirname(full), new_entries)
                return action()
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # --- reading ------------------------------------------------------------------------------
    def get_content(self, path: str) -> bytes:
        full = self._full(path)
        with os_errors(path), open(full, "rb") as file:
            return file.read()

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        if offset < 0:
            raise ValueError(f"negative read offset {offset}")
        full = self._full(path)
        with os_errors(path):
            file = open(full, "rb")  # noqa: SIM115 -- the caller closes it
            try:
                if stat_module.S_ISDIR(os.fstat(file.fileno()).st_mode):
                    raise IsADirectoryError(full)
                file.seek(offset)
            except BaseException:
                file.close()
                raise
            return file

    def stat(self, path: str) -> FileInfo:
        full = self._full(path)
        with os_errors(path):
            info = os.stat(full)
        is_dir = stat_module.S_ISDIR(info.st_mode)
        return FileInfo(path, 0 if is_dir else info.st_size, info.st_mtime, is_dir)

    def list(self, path: str) -> list[str]:
        full = self.root if path == "" else self._full(path)
        prefix = "" if path == "" else path + "/"
        try:
            with os_errors(path), os.scandir(full) as entries:
                names = [entry.name for entry in entries if is_valid_segment(entry.name)]
        except PathNotFound:
            if path == "":
                return []
            raise
        return sorted(prefix + name for name in names)

    # --- writing ------------------------------------------------------------------------------
    def put_content(self, path: str, data: bytes) -> None:
        full = self._full(path)
        directory = os.path.dirname(full)
        temp = f"{full}{TEMP_MARKER}{secrets.token_hex(8)}"

        def write_and_replace() -> None:
            try:
                with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp, full)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise

        new_entries: list[str] = []
        with os_errors(path):
            self._in_parent(full, write_and_replace, new_entries)
            synced_together([directory, *new_entries])

    def writer(self, path: str, append: bool = False) -> FileWriter:
        full = self._full(path)
        new_entries: list[str] = []  # its `commit` makes them durable with the file's name
        with os_errors(path):
            if append:
                fd = os.open(full, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            else:
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                fd = self._in_parent(full, lambda: os.open(full, flags, FILE_MODE), new_entries)
            try:
                if stat_module.S_ISDIR(os.fstat(fd).st_mode):
                    raise IsADirectoryError(full)
                file = open(fd, "ab", buffering=WRITE_BUFFER_SIZE)  # noqa: SIM115 -- owned by the writer
            except BaseException:
                os.close(fd)
                raise
        return FilesystemFileWriter(self, path, full, file, created=not append, new_entries=new_entries)

    def unlinked_writer(self, path: str) -> FileWriter | None:
        """An `O_TMPFILE` inode, made in the root: one system call, no directory made for it, no name,
        nothing left by a crash. Its link into place needs it on the filesystem of the path it gets
        (and a mount point in between is a different one, even of the same disk): as a `move` from
        `uploads/` to `blobs/` does, it takes the root and both on one. `path` is resolved only if the
        bytes are named there (`close`, `commit`). None where the kernel or the filesystem has no
        `O_TMPFILE` (or there is no /proc to link it through)."""
        flags = getattr(os, "O_TMPFILE", 0)
        if not flags or not HAS_PROC_FDS:
            return None
        try:
            fd = os.open(self.root, flags | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
        except OSError:  # EOPNOTSUPP, EISDIR (no O_TMPFILE here), or anything odd: the usual way
            return None
        try:
            file = open(fd, "ab", buffering=WRITE_BUFFER_SIZE)  # noqa: SIM115 -- owned by the writer
        except BaseException:
            os.close(fd)
            raise
        return UnlinkedFileWriter(self, path, "", file, created=True)

    def move(self, source: str, dest: str) -> None:
        source_full, dest_full = self._full(source), self._full(dest)
        if source_full == dest_full:
            self.stat(source)  # a missing source is still an error
            return
        with os_errors(source):
            if not os.path.isfile(source_full):
                raise FileNotFoundError(source_full)
            new_entries: list[str] = []
            self._in_parent(dest_full, lambda: os.replace(source_full, dest_full), new_entries)
            directory = os.path.dirname(dest_full)
            synced_together([directory, *new_entries])
        self._prune(os.path.dirname(source_full))

    def delete(self, path: str) -> None:
        full = self._full(path)
        with os_errors(path):
            if os.path.isdir(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        self._prune(os.path.dirname(full))

    def delete_files(self, paths: Sequence[str]) -> dict[str, Exception]:
        """As `delete` each, in fewer system calls: directories are opened relative to their parent
        (never through a link) once per call instead of a lookup from the root per file; a file's own
        directory goes with it when empty, and the directories above are pruned once at the end, not
        per file, skipping those whose link count shows a subdirectory. A link on the way (a
        symlinked directory) takes `delete`'s path; a file that is a link is removed, not followed."""
        failed: dict[str, Exception] = {}
        with _OpenDirectories(self.root) as directories:
            for path in paths:
                try:
                    _unlink_below(directories, path.split("/"))
                except FileNotFoundError:
                    pass  # already gone
                except OSError:
                    try:
                        self.delete(path)
                    except PathNotFound:
                        pass
                    except Exception as exc:
                        failed[path] = exc
            directories.prune()
        return failed

    # --- direct access ------------------------------------------------------------------------
    def url_for(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        return None

    def local_path(self, path: str) -> str | None:
        return self._full(path)

    def try_lock(self, path: str) -> PathLock | None:
        """flock(2) on the directory itself: every process on this machine (and on others sharing the
        disk over NFS) sees it, and the kernel drops it with its holder, even one killed by SIGKILL."""
        full = self._full(path)
        for _ in range(3):
            with os_errors(path):
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                try:
                    fd = os.open(full, flags)
                except FileNotFoundError:
                    try:
                        self._in_parent(full, lambda: os.makedirs(full, exist_ok=True))
                        fd = os.open(full, flags)
                    except (FileNotFoundError, FileExistsError):
                        # Pruned between its creation and the open: again. FileExistsError is the
                        # same race inside makedirs: another holder's directory was there for its
                        # mkdir and gone (pruned by that holder's release) when it looked again.
                        continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return None
                except BaseException:
                    os.close(fd)
                    raise
                # A prune or delete may have removed the directory between the open and the lock
                # (and someone made a new one): the lock only counts on the directory at the path.
                try:
                    current = os.stat(full)
                except FileNotFoundError:
                    current = None
                held = os.fstat(fd)
                if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                    return _LockedDirectory(self, full, fd)
                os.close(fd)
        raise StorageError(f"storage error on {path}: the directory kept disappearing while it was locked")


def _unlink_below(directories: _OpenDirectories, segments: list[str]) -> None:
    """Unlink the file at segments and its directory if that is left empty (not the root)."""
    *above, name = segments
    if not above:
        os.unlink(name, dir_fd=directories.fd(()))
        return
    *ancestors, parent = above
    ancestors_fd = directories.fd(tuple(ancestors))
    parent_fd = os.open(parent, _DIRECTORY_FLAGS, dir_fd=ancestors_fd)
    try:
        with contextlib.suppress(FileNotFoundError):  # its directory may still need to go
            os.unlink(name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)
    with contextlib.suppress(OSError):  # not empty: other files stay
        os.rmdir(parent, dir_fd=ancestors_fd)


# Directories only, never through a symbolic link (ELOOP or ENOTDIR for one).
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenDirectories:
    """Descriptors of the directories below a root that one `delete_files` call works in, each
    opened once, relative to its parent; `prune` then removes those left empty, deepest first."""

    def __init__(self, root: str) -> None:
        self._fds: dict[tuple[str, ...], int] = {(): os.open(root, _DIRECTORY_FLAGS)}

    def __enter__(self) -> _OpenDirectories:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def fd(self, segments: tuple[str, ...]) -> int:
        found = self._fds.get(segments)
        if found is None:
            found = os.open(segments[-1], _DIRECTORY_FLAGS, dir_fd=self.fd(segments[:-1]))
            self._fds[segments] = found
        return found

    def prune(self) -> None:
        for segments in sorted(self._fds, key=len, reverse=True):
            if not segments:
                continue  # the root stays
            # More than 2 links: a subdirectory still in it, so not empty; no need to try (and take
            # the lock of the directory above, which every other delete in it contends for).
            if os.fstat(self._fds[segments]).st_nlink > 2:
                continue
            with contextlib.suppress(OSError):  # not empty (a file), or already gone
                os.rmdir(segments[-1], dir_fd=self._fds[segments[:-1]])


class _DeferredCloses:
    """Closes descriptors of deleted directories in a thread of its own. The last close of a deleted
    directory frees its inode, a journalled change that waits for the filesystem's running journal
    commit (the one the blob's fsyncs just started): 1-12 ms on the VM the bench runs on, on every
    push's critical path. Nobody can reach such a directory by its path any more, so its lock can go a
    moment later. The thread starts on first use in each process (serve's workers are forked), through
    `start_thread` (RuntimeError when no thread can start: at interpreter shutdown)."""

    def __init__(self, start_thread: Callable[[threading.Thread], None] = threading.Thread.start) -> None:
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._start_thread = start_thread

    def close(self, fd: int) -> None:
        if self._pid != os.getpid():
            with self._start_lock:
                if self._pid != os.getpid():
                    fds: queue.SimpleQueue[int] = queue.SimpleQueue()  # forked: no closer came along
                    try:
                        self._start_thread(threading.Thread(target=_close_each, args=(fds,), daemon=True))
                    except RuntimeError:  # no new threads (the interpreter is shutting down): now, then
                        os.close(fd)
                        return
                    self._queue, self._pid = fds, os.getpid()
        self._queue.put(fd)


def _close_each(fds: queue.SimpleQueue[int]) -> None:
    while True:
        with contextlib.suppress(OSError):
            os.close(fds.get())


_DEFERRED_CLOSES = _DeferredCloses()


class _LockedDirectory:
    exclusive = True

    def __init__(self, driver: FilesystemDriver, full: str, fd: int) -> None:
        self._driver = driver
        self._full = full
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Left empty (nothing was written under it, or its bytes were moved on): no empty directories,
        # as everywhere else. It goes while we hold it; a process that opened it meanwhile sees it gone
        # once it holds the lock, and makes another.
        try:
            os.rmdir(self._full)
        except FileNotFoundError:
            pass  # gone already: a commit moved its bytes on and pruned it
        except OSError:  # not empty (an upload's bytes stay for its next chunk): it stays, and is ours
            os.close(fd)  # drops the flock
            return
        # Nobody finds this directory by its path now: its last close (and the flock) can wait.
        _DEFERRED_CLOSES.close(fd)
        self._driver._prune(os.path.dirname(self._full))
