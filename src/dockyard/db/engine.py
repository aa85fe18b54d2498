"""Build the SQLAlchemy engine for a database URL (SQLite embedded default; PostgreSQL in HA)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from dockyard.errors import ConfigError

WRITE_OPTION = "dockyard_write"


def normalise_url(url: str) -> str:
    """Plain `postgresql://` (and Heroku-style `postgres://`) URLs run on psycopg 3, the driver dockyard
    ships with; SQLAlchemy's default for them would be psycopg2."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def build_engine(url: str, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, echo)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise ConfigError(
        f"database.url: unsupported database {parsed.get_backend_name()!r} (sqlite, postgresql)"
    )


def _sqlite_engine(url: str, database: str | None, echo: bool) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8,
        max_overflow=16,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin (so BEGIN IMMEDIATE works).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # A write transaction takes the lock up front (IMMEDIATE), so concurrent writers queue on
    # busy_timeout instead of failing with "database is locked" when a reader upgrades.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
