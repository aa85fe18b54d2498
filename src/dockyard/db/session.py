"""Transactions: `Database.read()` and `Database.write()` hand out a Core connection in a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from dockyard.db.engine import WRITE_OPTION


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
        with self.engine.connect().execution_options(**options) as connection, connection.begin():
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
