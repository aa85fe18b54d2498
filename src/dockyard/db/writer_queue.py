"""Write transactions of the processes that share one SQLite file queue on a lock file (`flock`).

SQLite lets one writer in at a time. A connection that finds the write lock taken by another process
polls for it in SQLite's busy handler, sleeping 1, 2, 5, 10, ... up to 100 ms between looks: on a
busy node (two workers pushing) a write often waited several milliseconds after the lock was free,
and a process whose threads took it one after another could keep the other waiting for tens of
milliseconds. Threads of one process queue on a `threading.Lock` (db.session); processes now queue
on an exclusive `flock` of `<database>-lock` around their write transactions, in the kernel: the
next one starts as soon as the last one ends, with no sleep. Its cost: two system calls per write.

The lock goes with the process that holds it, however it ends (kill -9 included): the kernel drops
a `flock` when the last descriptor of its open file closes. A forked child would keep the parent's
descriptor open (and with it a lock the parent held when it was killed), so children close theirs
at the fork and open their own. Writers that do not come through `Database.write` (migrations, a
restore) do not take it; SQLite's own lock (and its busy handler) still serialises them with the rest.
Like the thread lock, the wait has no timeout: a write waits for the ones queued before it (each a
short transaction); the 30 s `busy_timeout` still bounds a wait for a writer that does not queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from pathlib import Path

LOCK_SUFFIX = "-lock"
FILE_MODE = 0o600

_open_queues: weakref.WeakSet[WriterQueue] = weakref.WeakSet()


class WriterQueue:
    """The exclusive `flock` of `<database>-lock`, opened once per process (on first use)."""

    def __init__(self, database: str | Path) -> None:
        self.path = Path(f"{database}{LOCK_SUFFIX}")
        self._fd = -1
        self._pid = 0
        _open_queues.add(self)

    def acquire(self) -> None:
        """Wait for the lock; the caller holds the process's write lock (one thread at a time)."""
        fcntl.flock(self._descriptor(), fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._pid == os.getpid():
            os.close(fd)  # releases the lock too, if this process held it

    def _descriptor(self) -> int:
        if self._fd < 0 or self._pid != os.getpid():  # one thread at a time: see acquire
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._fd, self._pid = os.open(self.path, flags, FILE_MODE), os.getpid()
        return self._fd

    def _forget_in_child(self) -> None:
        """In a forked child: close the parent's descriptor (it would keep a lock the parent holds
        alive after the parent is gone); the child opens its own on its first write."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _after_fork_in_child() -> None:
    for queue in list(_open_queues):
        queue._forget_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
