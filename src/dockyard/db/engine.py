"""Build the SQLAlchemy engine for a database URL (SQLite embedded default; PostgreSQL in HA)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from dockyard.errors import ConfigError

WRITE_OPTION = "dockyard_write"

# How long a request waits for a free pooled connection before it fails with a retryable error.
POOL_TIMEOUT_SECONDS = 10.0
# libpq settings (https://www.postgresql.org/docs/current/libpq-connect.html), defaults for every
# PostgreSQL connection: connecting to a server that does not answer gives up after 5 s; a server that
# went silent (host down, network cut: no RST ever comes) is noticed within ~20 s by TCP keepalives,
# and a send it never acknowledges fails after 15 s, instead of the kernel's defaults (hours).
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # milliseconds
}


def normalise_url(url: str) -> str:
    """Plain `postgresql://` (and Heroku-style `postgres://`) URLs run on psycopg 3, the driver dockyard
    ships with; SQLAlchemy's default for them would be psycopg2."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL or an in-memory SQLite."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def build_engine(url: str, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, echo)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(
            url,
            echo=echo,
            # No `pool_pre_ping`: its `SELECT 1` was a round trip more at every checkout (~20% of a small
            # write's time). The BEGIN, sent at once (below), finds a dropped connection instead, and
            # `Database.read` / `write` start such a transaction again on a new one (db.session).
            pool_size=10,
            max_overflow=20,
            pool_timeout=POOL_TIMEOUT_SECONDS,
            connect_args=_postgres_timeouts(parsed.query),
        )
        engine.dialect.do_begin = _postgres_begin  # type: ignore[method-assign]
        return engine
    raise ConfigError(
        f"database.url: unsupported database {parsed.get_backend_name()!r} (sqlite, postgresql)"
    )


def _postgres_begin(dbapi_connection: Any) -> None:
    """Send the transaction's BEGIN now, when SQLAlchemy begins it, not with its first statement.

    psycopg sends BEGIN (with the isolation level and READ ONLY the connection is set to; nothing in
    autocommit) as a round trip of its own before the first statement of a transaction. Sent here
    instead, it costs nothing more, and a connection the server dropped (a restart, a failover) fails
    here, before any statement of the caller ran: SQLAlchemy handles that as any disconnect (the
    connection, and every other the pool made before it, is replaced), and the transaction can be
    begun again on a new connection (`Database.read` / `write` do). This is what `pool_pre_ping`
    was for, without its round trip. `_start_query` is psycopg's own step before a statement (3.1 to
    3.2 at least); tests/unit/db/test_postgres_begin.py fails if it stops sending the BEGIN."""
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    with driver.lock:
        driver.wait(driver._start_query())


def _postgres_timeouts(query: Mapping[str, Any]) -> dict[str, Any]:
    """Bound every wait on the server, so a database that is gone fails a request in seconds (a 503
    the client retries) instead of holding a thread, and with it the node, for minutes. Options set
    in the URL's query (`?connect_timeout=10`) win."""
    return {key: value for key, value in POSTGRES_CONNECT_ARGS.items() if key not in query}


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


WAL_SIZE_LIMIT = 64 * 1024 * 1024


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin (so BEGIN IMMEDIATE works).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A large write (garbage collection, an import) grows the WAL to hundreds of MB; without a limit
    # the file keeps that size after every checkpoint. 64 MiB: truncated back once a checkpoint resets it.
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # A write transaction takes the lock up front (IMMEDIATE), so concurrent writers queue on
    # busy_timeout instead of failing with "database is locked" when a reader upgrades.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    statement = "BEGIN IMMEDIATE" if write else "BEGIN"
    # On the driver, not `exec_driver_sql`: a statement through the Connection (execution context,
    # cursor events, result) cost ~20 of the ~60 µs of CPU a whole transaction took, for a statement
    # with no parameters and no rows. Its errors still come out as SQLAlchemy's (`database is
    # locked` past busy_timeout: an OperationalError, retryable like any other).
    try:
        connection.connection.driver_connection.execute(statement)
    except sqlite3.Error as exc:
        raise sa_exc.DBAPIError.instance(
            statement, (), exc, sqlite3.Error, dialect=connection.dialect
        ) from exc
