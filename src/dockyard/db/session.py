"""Transactions: `Database.read()` and `Database.write()` hand out a Core connection in a transaction."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

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
