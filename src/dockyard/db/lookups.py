"""Point reads for the hot paths: a statement compiled once, run on a raw driver connection.

A /v2 request that misses its cache (a manifest by tag or digest, a blob's size in a repository)
reads one row by key. Through a SQLAlchemy Connection that read cost about 0.45 ms of CPU here:
building the statement and its cache key, the execution context, the BEGIN the engine's hook sends,
COMMIT, the pool. The same indexed SELECT on the driver costs about 10 µs. So these reads skip all of
that: the statement is compiled once per dialect (one SQL source, SQLAlchemy Core, for both
databases) and executed on a driver connection as a single autocommitted statement (one statement
sees one consistent snapshot; nothing here needs more).

- SQLite: each thread keeps its own read connection to the file (opened on first use, closed by
  `close`). `one(..., wait=False)` runs on the caller's thread with no lock wait at all (busy_timeout
  0): the event loop calls it, since a WAL reader never waits for writers and an indexed lookup on a
  small page set is cheaper than the hand-off to a worker thread (~0.1-0.2 ms of CPU). When SQLite
  would make it wait (rare: a WAL being reset), it raises WouldBlock and the caller takes a thread.
- PostgreSQL: a connection from a small pool of the lookups' own (`_DriverPool`), in autocommit (no
  BEGIN / ROLLBACK round trips), the statement prepared server-side once per connection and run
  on libpq itself (`pgconn.exec_prepared`, rows in binary): psycopg's cursor around the same call
  (its query conversion, adapters, prepared-statement bookkeeping, row maker) cost ~35 of ~50 µs
  of CPU (docs/benchmarks.md, "Cache misses on PostgreSQL"); a lookup returning a column type not
  decoded here (`_DECODERS`) runs on the connection's cursor instead. Never on the event loop
  (`wait=False` raises WouldBlock): it is a network round trip, and only one: no BEGIN, no ping (the
  engine's pool used to ping each connection it handed out, a second round trip that was half of a
  lookup's time and CPU). A lookup that finds its connection
  dropped (a restart, a failover) drops every connection of the pool and runs once more on a new one,
  as a transaction of `Database.read` / `write` does at its BEGIN (db.session). It is a list of
  driver connections, not a SQLAlchemy pool: checking a connection out of a QueuePool and back in
  (its record, the reset's ROLLBACK call on an autocommit connection, the events) cost about a third
  of a lookup's CPU.

Errors come out as SQLAlchemy's DBAPIError subclasses, as from a Connection, so the API's one
mapping of database errors (503 for an unavailable database) applies unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ClauseElement, Engine
from sqlalchemy import exc as sa_exc

# A lookup connection's page cache (SQLite's default is 2 MiB per connection; the OS caches the file).
SQLITE_LOOKUP_CACHE_KIB = 1024
SQLITE_BUSY_TIMEOUT_MS = 30_000  # in worker threads, as the engine's connections (db.engine)
# PostgreSQL connections a process keeps for lookups, besides the engine's (db.engine): a lookup holds
# one for a single round trip, so a few serve thousands a second.
POSTGRES_LOOKUP_POOL_SIZE = 4
POSTGRES_LOOKUP_OVERFLOW = 4


class WouldBlock(Exception):
    """The lookup cannot run here without waiting: run it in a worker thread instead."""


class Lookup:
    """A statement compiled for one engine's dialect, with its parameters' order; on PostgreSQL also
    as libpq takes it (`$1`, `$2` ...: `libpq_sql`, `libpq_names`), with a name to prepare it under."""

    def __init__(self, engine: Engine, statement: ClauseElement) -> None:
        compiled: Any = statement.compile(dialect=engine.dialect)  # a SQLCompiler
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.libpq_sql = b""
        self.libpq_names: tuple[str, ...] = ()
        self.prepared_name = f"dockyard_lookup_{next(_lookup_numbers)}".encode()
        # What turns each column of a binary row into what the cursor would give: found at the first
        # row (the result's column types); None until then, () when one is not decoded here.
        self.decoders: tuple[Callable[[bytes], Any], ...] | None = None
        if engine.dialect.name == "postgresql" and not self.positional:
            self.libpq_sql, self.libpq_names = _numbered(self.sql)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
        return tuple(values[name] for name in self.names) if self.positional else values


class Lookups:
    """Runs `Lookup`s for one Database (see the module docstring)."""

    def __init__(self, engine: Engine, sqlite_path: str | None) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._sqlite_path = sqlite_path  # None for PostgreSQL and for an in-memory SQLite
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._pid = os.getpid()
        self._pool: _DriverPool | None = None  # PostgreSQL's, made on first use
        self._pool_lock = threading.Lock()

    def prepare(self, statement: ClauseElement) -> Lookup:
        return Lookup(self._engine, statement)

    def one(self, lookup: Lookup, values: Mapping[str, Any], *, wait: bool = True) -> tuple[Any, ...] | None:
        """The first row, or None. `wait=False`: raise WouldBlock instead of waiting for anything."""
        parameters = lookup.parameters(values)
        if self._sqlite_path is not None:
            return self._sqlite_one(lookup, parameters, wait)
        if not wait:
            raise WouldBlock()
        return self._pooled_one(lookup, parameters)

    def close(self) -> None:
        """Close every SQLite lookup connection this process opened (threads open new ones after)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            # One in use by its thread right now goes with the process.
            with contextlib.suppress(sqlite3.ProgrammingError):
                connection.close()
        self._local = threading.local()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.dispose()

    # --- internals ----------------------------------------------------------------------------
    def _sqlite_one(self, lookup: Lookup, parameters: Any, wait: bool) -> tuple[Any, ...] | None:
        connection = self._sqlite_connection(wait)
        try:
            # To the end (the lookups are by unique keys): a statement left unfinished would keep its
            # read transaction, and with it an old snapshot, open on this connection.
            rows = connection.execute(lookup.sql, parameters).fetchall()
            return tuple(rows[0]) if rows else None
        except sqlite3.OperationalError as exc:
            if not wait and _busy(exc):
                raise WouldBlock() from exc
            raise self._wrapped(lookup, parameters, exc) from exc
        except sqlite3.Error as exc:
            raise self._wrapped(lookup, parameters, exc) from exc

    def _sqlite_connection(self, wait: bool) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use
            self._pid = os.getpid()
            self._local = threading.local()
            self._opened = []
        attribute = "waiting" if wait else "immediate"
        connection: sqlite3.Connection | None = getattr(self._local, attribute, None)
        if connection is None:
            assert self._sqlite_path is not None
            timeout = SQLITE_BUSY_TIMEOUT_MS / 1000 if wait else 0
            connection = sqlite3.connect(
                self._sqlite_path, isolation_level=None, check_same_thread=False, timeout=timeout
            )
            try:
                connection.execute(f"PRAGMA cache_size=-{SQLITE_LOOKUP_CACHE_KIB}")
                connection.execute("PRAGMA query_only=ON")
            except sqlite3.Error as exc:
                connection.close()
                if not wait and isinstance(exc, sqlite3.OperationalError) and _busy(exc):
                    raise WouldBlock() from exc
                raise sa_exc.OperationalError("connect", None, exc) from exc
            setattr(self._local, attribute, connection)
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    def _pooled_one(self, lookup: Lookup, parameters: Any) -> tuple[Any, ...] | None:
        if self._dialect != "postgresql":
            return self._engine_one(lookup, parameters)
        try:
            return self._driver_one(self._lookup_pool(), lookup, parameters)
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The connection had been dropped (and so, most likely, were the others the pool holds): start
        # afresh, once. A database that is really gone fails this try too, as an unavailable one.
        self._reset_pool()
        return self._driver_one(self._lookup_pool(), lookup, parameters)

    def _lookup_pool(self) -> _DriverPool:
        pool = self._pool
        if pool is None or os.getpid() != self._pid:
            with self._pool_lock:
                if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use
                    self._pid = os.getpid()
                    self._local = threading.local()
                    self._opened = []
                    self._pool = None
                if self._pool is None:
                    self._pool = _DriverPool(self._engine)
                pool = self._pool
        return pool

    def _reset_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.dispose()

    def _driver_one(self, pool: _DriverPool, lookup: Lookup, parameters: Any) -> tuple[Any, ...] | None:
        loaded_dbapi = self._engine.dialect.loaded_dbapi
        try:  # bounds the wait for a free connection as the engine says
            connection, cursor = pool.get()
        except loaded_dbapi.Error as exc:
            raise self._wrapped(lookup, parameters, exc) from exc
        broken = False
        try:
            found = _libpq_one(connection, lookup, parameters)
            if found is not _NOT_HERE:
                return found
            cursor.execute(lookup.sql, parameters, prepare=True)
            row = cursor.fetchone()
            return None if row is None else tuple(row)
        except loaded_dbapi.Error as exc:
            wrapped = self._wrapped(lookup, parameters, exc)
            if self._engine.dialect.is_disconnect(exc, connection, cursor):
                broken = True
                wrapped.connection_invalidated = True
            raise wrapped from exc
        finally:
            pool.put(connection, cursor, broken)

    def _engine_one(self, lookup: Lookup, parameters: Any) -> tuple[Any, ...] | None:
        """An in-memory SQLite: its pool's one connection, as every other statement uses."""
        pooled = self._engine.raw_connection()
        try:
            cursor = pooled.cursor()
            try:
                cursor.execute(lookup.sql, parameters)
                row = cursor.fetchone()
            finally:
                cursor.close()
            return None if row is None else tuple(row)
        except self._engine.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(lookup, parameters, exc) from exc
        finally:
            pooled.close()

    def _wrapped(self, lookup: Lookup, parameters: Any, exc: Exception) -> sa_exc.StatementError:
        return sa_exc.DBAPIError.instance(
            lookup.sql, parameters, exc, self._engine.dialect.loaded_dbapi.Error
        )


class _DriverPool:
    """PostgreSQL driver connections for lookups, in autocommit, each with the cursor it runs them on:
    at most POSTGRES_LOOKUP_POOL_SIZE kept idle, at most that plus POSTGRES_LOOKUP_OVERFLOW at once
    (a lookup waits up to the engine's pool timeout for one, then fails as the engine's pool does).
    New connections are made as the engine makes its own (its creator, with the connection timeouts,
    and the dialect's set-up)."""

    def __init__(self, engine: Engine) -> None:
        engine_pool: Any = engine.pool  # a QueuePool (db.engine)
        self._creator = engine_pool._creator
        self._on_connect = engine.dialect.on_connect()
        self._timeout = float(engine_pool.timeout())
        self._slots = threading.BoundedSemaphore(POSTGRES_LOOKUP_POOL_SIZE + POSTGRES_LOOKUP_OVERFLOW)
        self._idle: list[tuple[Any, Any]] = []  # list.append and .pop are atomic: no lock of our own
        self._disposed = False

    def get(self) -> tuple[Any, Any]:
        if not self._slots.acquire(timeout=self._timeout):
            raise sa_exc.TimeoutError(
                f"no PostgreSQL lookup connection free within {self._timeout:g} s", None, None
            )
        try:
            return self._idle.pop()  # the most recently used: its server process is warm
        except IndexError:
            pass
        try:
            connection = self._creator()
            if self._on_connect is not None:
                self._on_connect(connection)
            connection.autocommit = True  # for good: these connections run nothing else
            return connection, connection.cursor()
        except BaseException:
            self._slots.release()
            raise

    def put(self, connection: Any, cursor: Any, broken: bool) -> None:
        if broken or self._disposed or connection.closed or len(self._idle) >= POSTGRES_LOOKUP_POOL_SIZE:
            with contextlib.suppress(Exception):
                connection.close()
        else:
            self._idle.append((connection, cursor))
        self._slots.release()

    def dispose(self) -> None:
        """Close the idle connections; those in use close when they come back (`put` after this)."""
        self._disposed = True
        while True:
            try:
                connection, _ = self._idle.pop()
            except IndexError:
                return
            with contextlib.suppress(Exception):
                connection.close()


_lookup_numbers = itertools.count()
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def _numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """psycopg's `%(name)s` placeholders as libpq's `$n` (a name used twice is one parameter), `%%` as
    `%`; and the names in their numbers' order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql).encode(), tuple(names)


def _integer(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True)


# Binary values of the column types lookups return, as psycopg's cursor would give them, by type oid:
# text, varchar, name, bpchar; bytea; int8, int4, int2; bool.
_DECODERS: dict[int, Callable[[bytes], Any]] = {
    25: bytes.decode,
    1043: bytes.decode,
    19: bytes.decode,
    1042: bytes.decode,
    17: bytes,
    20: _integer,
    23: _integer,
    21: _integer,
    16: lambda value: value != b"\x00",
}
_NOT_HERE = object()  # _libpq_one: run it on the cursor instead


def _libpq_one(connection: Any, lookup: Lookup, parameters: Any) -> Any:
    """The first row of `lookup` on libpq itself (see the module docstring), or _NOT_HERE when it
    cannot run there: a parameter other than text, an integer or NULL, a column type not decoded
    here, a connection whose encoding is not UTF-8."""
    if not lookup.libpq_sql or lookup.decoders == ():
        return _NOT_HERE
    values: list[bytes | None] = []
    for name in lookup.libpq_names:
        value = parameters[name]
        if isinstance(value, str):
            values.append(value.encode())
        elif value is None:
            values.append(None)
        elif type(value) is int:
            values.append(str(value).encode())
        else:
            return _NOT_HERE
    pgconn = connection.pgconn
    prepared: set[bytes] | None = getattr(connection, "_dockyard_prepared", None)
    if prepared is None:
        if connection.info.encoding != "utf-8":
            lookup.decoders = ()
            return _NOT_HERE
        prepared = connection._dockyard_prepared = set()
    if lookup.prepared_name not in prepared:
        _check(connection, pgconn.prepare(lookup.prepared_name, lookup.libpq_sql))
        prepared.add(lookup.prepared_name)
    result = _check(connection, pgconn.exec_prepared(lookup.prepared_name, values, result_format=1))
    if result.ntuples == 0:
        return None
    decoders = lookup.decoders
    if decoders is None:
        found = [_DECODERS.get(result.ftype(column)) for column in range(result.nfields)]
        decoders = lookup.decoders = () if None in found else tuple(found)  # type: ignore[arg-type]
    if not decoders:  # also when another thread found, since the check above, that they are not here
        return _NOT_HERE
    get = result.get_value
    return tuple(
        None if (value := get(0, column)) is None else decode(value) for column, decode in enumerate(decoders)
    )


# libpq's PGRES_COMMAND_OK and PGRES_TUPLES_OK (psycopg.pq.ExecStatus): as plain ints, so a lookup
# imports nothing (psycopg's `from ... import` inside `_check` cost a few µs per miss).
_RESULT_OK = (1, 2)


def _check(connection: Any, result: Any) -> Any:
    """`result`, or the psycopg error it carries raised (as the cursor would raise it)."""
    if result.status in _RESULT_OK:
        return result
    from psycopg import errors

    raise errors.error_from_result(result, encoding=connection.info.encoding)


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(exc).lower()
    return "locked" in message or "busy" in message
