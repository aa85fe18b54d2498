"""Group commit for SQLite: a committed write transaction is on the disk before it is answered.

SQLite runs with `synchronous=NORMAL` (db.engine): a commit writes its pages to the WAL through the page
cache and returns without waiting for the disk, so a power cut or a kernel crash could lose the last
seconds of answered writes. `synchronous=FULL` would fdatasync the WAL inside each commit, while the
write lock is held: writers would queue behind each other's flushes. Here a write transaction asks for
a flush after it committed and let go of the write locks, and the threads of a process that ask while a
flush runs share the next one: one fdatasync covers every commit that came before it started (the
WAL is written in order), those that asked for none too (`Database.write(durable=False)`: an upload
session's bookkeeping).

One fdatasync here costs ~200 µs of CPU (system time) and from well under a millisecond to several on a
loaded disk; `python -m bench.writes` and docs/operations.md ("What an acknowledged write survives")."""

from __future__ import annotations

import os
import threading


class WalFlusher:
    """Flushes one SQLite database's WAL file for the threads of this process, grouped."""

    def __init__(self, wal_file: str) -> None:
        self._wal_file = wal_file
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()  # a forked child starts afresh: the parent's threads are not in it
        self._changed = threading.Condition()
        self._asked = 0  # tickets handed out: one per commit that asked for a flush
        self._flushed = 0  # every ticket up to this one is on the disk
        self._flushing = False

    def flush(self) -> None:
        """Return once everything this thread committed before the call is on the disk."""
        if self._pid != os.getpid():
            self._start()
        with self._changed:
            self._asked += 1
            ticket = self._asked
            while self._flushed < ticket:
                if self._flushing:  # started maybe before this commit: wait for it, then look again
                    self._changed.wait()
                    continue
                self._flush_as_leader()

    def _flush_as_leader(self) -> None:
        """Flush for every ticket handed out so far (called with the condition held)."""
        covered = self._asked
        self._flushing = True
        self._changed.release()
        try:
            flush_file(self._wal_file)
        finally:
            self._changed.acquire()
            self._flushing = False
            self._changed.notify_all()
        self._flushed = max(self._flushed, covered)


def flush_file(path: str) -> None:
    """fdatasync `path`: what was written to it is on the disk when this returns. A WAL that is gone
    was checkpointed into the database file, which SQLite flushed before removing it."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(descriptor)
    finally:
        os.close(descriptor)
