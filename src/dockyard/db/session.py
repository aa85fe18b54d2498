"""Transactions: `Database.read()` and `Database.write()` hand out a Core connection in a transaction."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy import exc as sa_exc

from dockyard.db.engine import WRITE_OPTION
from dockyard.db.lookups import Lookups
from dockyard.db.readonly import ReadOnlyFlag
from dockyard.db.wal_flush import WalFlusher
from dockyard.db.writer_queue import WriterQueue
from dockyard.errors import ReadOnly, StorageFull

log = logging.getLogger("dockyard.db")


class Database:
    def __init__(
        self, engine: Engine, read_only: ReadOnlyFlag | None = None, flush_commits: bool = True
    ) -> None:
        self.engine = engine
        # Write transactions' connections carry WRITE_OPTION from the start (BEGIN IMMEDIATE on SQLite):
        # set on each new Connection instead, it cost ~6 µs of CPU per transaction (events, a copy).
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        # Point reads of the hot paths, on raw driver connections (db.lookups).
        self.lookups = Lookups(engine, _sqlite_file(engine))
        # The runtime read-only switch (db.readonly); None: this process never checks one.
        self.read_only_flag = read_only
        # SQLite has one writer at a time, and a blocked writer polls with sleeps of up to 100 ms.
        # Threads of one process queue on a lock instead, so only other processes ever make them wait.
        self._write_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        # On a SQLite file, where this process's write transactions run one at a time anyway, they share
        # one Connection kept between them (`_writer`): a checkout from the pool, a new Connection
        # and its return cost ~28 of the ~45 µs of CPU around each write transaction. Kept by the
        # process that made it (a forked child makes its own).
        self._keeps_writer = _sqlite_file(engine) is not None
        # ... and other processes' write transactions on that file queue on a lock file with them
        # (db.writer_queue), instead of polling for SQLite's lock with sleeps.
        database_file = _sqlite_file(engine)
        self._writer_queue = WriterQueue(database_file) if database_file is not None else None
        # ... and each flushes the WAL once it committed, out of the locks, grouped (db.wal_flush): an
        # answered write survives a power cut too (unless `database.flush_commits` is off, or the
        # write is marked as one that need not: `write(durable=False)`).
        flushes = database_file is not None and flush_commits
        self._wal = WalFlusher(f"{database_file}-wal") if flushes else None
        self._writer: Connection | None = None
        self._writer_pid = 0
        # What to do once a write transaction commits (`after_commit`), by its connection. Weak: a
        # connection that did not come from `write()` takes its callbacks with it when it goes.
        self._after_commit: weakref.WeakKeyDictionary[Connection, list[Callable[[], None]]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def is_read_only(self) -> bool:
        """Whether the runtime read-only switch is on for this deployment (a file check)."""
        return self.read_only_flag is not None and self.read_only_flag.is_on()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        connection, transaction = _begin(self.engine)
        with connection, transaction:
            yield connection

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[Connection]:
        """A transaction that commits when the block ends without error, else rolls back.

        Raises StorageFull when the database has no room to grow (its disk is full), and ReadOnly
        (rolled back) when the read-only switch is on at the commit (db.readonly: why there).
        The `after_commit` callbacks of the transaction run once it committed, after the block.

        `durable=False`, on SQLite: the commit is not flushed to the disk before this returns, so a
        power cut or a kernel crash may lose it (a crash of dockyard does not). Only for writes whose
        loss tells no client that something it was told is kept is gone (an upload session's
        bookkeeping: its client resumes from an earlier offset, or starts again). The WAL is written in
        order: the next durable commit's flush puts this one on the disk too, so what survives a power
        cut is always every commit up to some moment. PostgreSQL flushes every commit itself."""
        after = None
        try:
            with self._write_lock, self._queued():
                if self._keeps_writer:
                    connection, transaction = self._begin_kept()
                    kept = connection
                else:
                    connection, transaction = _begin(self._write_engine)
                    kept = None
                with contextlib.nullcontext() if kept is not None else connection:
                    try:
                        with transaction:
                            yield connection
                            if self.is_read_only():
                                raise ReadOnly()
                    except sa_exc.DBAPIError:
                        if kept is not None:  # whatever the driver connection's state now: not kept
                            self._drop_writer()
                        raise
                    finally:
                        if self._after_commit:  # committed or not, the callbacks are the transaction's
                            after = self._after_commit.pop(connection, None)
        except sa_exc.DBAPIError as exc:
            if database_full(exc):
                raise StorageFull(
                    "storage is full: the registry's database cannot grow until space is freed"
                ) from exc
            raise
        if durable and self._wal is not None:  # reached only when the transaction committed
            self._wal.flush()
        for callback in after or ():
            callback()

    @contextmanager
    def _queued(self) -> Iterator[None]:
        """This process's turn among the processes writing to the SQLite file (db.writer_queue)."""
        queue = self._writer_queue
        if queue is None:
            yield
            return
        queue.acquire()
        try:
            yield
        finally:
            queue.release()

    def after_commit(self, connection: Connection, callback: Callable[[], None]) -> None:
        """Call `callback` once the write transaction of `connection` (from `write()`) has committed,
        after its connection is released; never when it rolls back. For what others may act on only
        after the commit (telling job runners a job is queued: they would find nothing before)."""
        self._after_commit.setdefault(connection, []).append(callback)

    def _begin_kept(self) -> tuple[Connection, RootTransaction]:
        """The kept write Connection (made on first use, or again after a failure or a fork), in a
        transaction begun. The caller holds the write lock."""
        if self._writer is not None and (self._writer_pid != os.getpid() or self._writer.invalidated):
            if self._writer_pid == os.getpid():
                self._writer.close()
            self._writer = None  # a parent's: its driver connection is the parent's to close
        if self._writer is None:
            # On the engine itself, with the write option set on the Connection once: a Connection of
            # `_write_engine` (an OptionEngine) reaches the engine's event listeners through one more
            # joined level, which every event of every statement and transaction walks (~0.5 µs each).
            connection = self.engine.connect()
            try:
                connection.execution_options(**{WRITE_OPTION: True})
                transaction = connection.begin()
            except BaseException:
                connection.close()
                raise
            self._writer, self._writer_pid = connection, os.getpid()
            return connection, transaction
        try:
            return self._writer, self._writer.begin()
        except BaseException:
            self._drop_writer()
            raise

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and self._writer_pid == os.getpid():
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                writer.close()

    def dispose(self) -> None:
        with self._write_lock:
            self._drop_writer()
            if self._writer_queue is not None:
                self._writer_queue.close()
        self.lookups.close()
        self.engine.dispose()


def _begin(engine: Engine) -> tuple[Connection, RootTransaction]:
    """A connection and its transaction, begun. On PostgreSQL the BEGIN is sent at once (db.engine),
    so a pooled connection the server dropped since its last use (a restart, a failover) fails here,
    before the caller ran anything: SQLAlchemy has then replaced it and the pool's other connections
    of before, and the transaction is begun once more on a new connection. A database that is really
    gone fails that try too, as unavailable (a 503 the client retries)."""
    connection = engine.connect()
    try:
        return connection, connection.begin()
    except sa_exc.DBAPIError as exc:
        connection.close()
        if not exc.connection_invalidated:
            raise
    connection = engine.connect()
    try:
        return connection, connection.begin()
    except BaseException:
        connection.close()
        raise


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return database


@contextmanager
def unless_full(what: str) -> Iterator[None]:
    """Around a write that a read-only request makes on the side (a login's time, a token's last
    use): on a full disk it is skipped with a warning, in read-only maintenance quietly, and the
    request (a pull) goes on."""
    try:
        yield
    except StorageFull:
        log.warning("storage is full: %s not recorded", what)
    except ReadOnly:
        log.debug("read-only maintenance: %s not recorded", what)


def _psycopg() -> Any:
    """psycopg if this process loaded it (it talks to PostgreSQL), else None: an error can only be
    one of its classes once it is loaded, and a process on SQLite never pays for importing it."""
    module = sys.modules.get("psycopg")
    return module if module is not None and hasattr(module, "errors") else None


def database_full(exc: BaseException) -> bool:
    """Whether `exc` means the database has no room to write: SQLite's SQLITE_FULL ("database or disk
    is full"), PostgreSQL's disk_full (53100: "could not extend file"). Not worth a retry: space must
    be freed first. Follows the `raise ... from` chain a few levels."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        driver_error = seen.orig if isinstance(seen, sa_exc.DBAPIError) else seen
        psycopg = _psycopg()
        if psycopg is not None and isinstance(driver_error, psycopg.errors.DiskFull):
            return True
        if isinstance(driver_error, sqlite3.Error) and (
            getattr(driver_error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(driver_error)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot serve right now (unreachable, restarting, no free pooled
    connection, a deadlock or lock wait it broke off) rather than a bug: the request may be retried,
    so the API answers 503 with Retry-After. Follows the `raise ... from` chain a few levels."""
    if database_full(exc):  # psycopg's DiskFull is an OperationalError too, but no retry will help
        return False
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if _transient(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):  # pool checkout timed out
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    driver_error: BaseException | None = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    # psycopg's OperationalError covers connection failures, admin shutdown, too many connections,
    # deadlocks and serialization failures, cancelled statements: all worth a retry.
    psycopg = _psycopg()
    if psycopg is not None and isinstance(driver_error, psycopg.errors.OperationalError):
        return True
    if isinstance(driver_error, sqlite3.OperationalError):  # another process holds the write lock too long
        message = str(driver_error).lower()
        return "locked" in message or "busy" in message
    return False
