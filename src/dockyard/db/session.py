"""Transactions: `Database.read()` and `Database.write()` hand out a Core connection in a transaction."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from dockyard.db.engine import WRITE_OPTION


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a blocked writer polls with sleeps of up to 100 ms.
        # Threads of one process queue on a lock instead, so only other processes ever make them wait.
        self._write_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits when the block ends without error, else rolls back."""
        options = {WRITE_OPTION: True}
        with (
            self._write_lock,
            self.engine.connect().execution_options(**options) as connection,
            connection.begin(),
        ):
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot serve right now (unreachable, restarting, no free pooled
    connection, a deadlock or lock wait it broke off) rather than a bug: the request may be retried,
    so the API answers 503 with Retry-After. Follows the `raise ... from` chain a few levels."""
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
    if isinstance(driver_error, psycopg.OperationalError):
        return True
    if isinstance(driver_error, sqlite3.OperationalError):  # another process holds the write lock too long
        message = str(driver_error).lower()
        return "locked" in message or "busy" in message
    return False
