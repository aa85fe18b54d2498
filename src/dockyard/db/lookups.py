"""Point reads for the hot paths: a statement compiled once, run on a raw driver connection.

A /v2 request that misses its cache (a manifest by tag or digest, a blob's size in a repository)
reads one row by key. Through a SQLAlchemy Connection that read cost about 0.45 ms of CPU here:
building the statement and its cache key, the execution context, the BEGIN the engine's hook sends,
COMMIT, the pool. The same indexed SELECT on the driver costs about 10 µs. So these reads skip all of
that: the statement is compiled once per dialect (one SQL source, SQLAlchemy Core, for both
databases) and executed on a driver connection as a single autocommitted statement (one statement
sees one consistent snapshot; nothing here needs more).

The /v2 hot paths await `one_async(lookup, values, in_thread)`, one entry point for every database:
the parameters are prepared once, then the lookup runs where it costs least without blocking the
event loop, as below; `in_thread` is the caller's hand-off to a worker thread, used only where the
loop cannot run it. Worker threads (and jobs, the CLI) call `one`, which blocks.

- SQLite: each thread keeps its own read connection to the file (opened on first use, closed by
  `close`). On the loop (`one_async`, or `one(..., wait=False)`) the read runs on the caller's
  thread with no lock wait at all (busy_timeout 0) and `one_async` returns without suspending: a WAL
  reader never waits for writers and an indexed lookup on a small page set is cheaper than the
  hand-off to a worker thread (~0.1-0.2 ms of CPU). When SQLite would make it wait (rare: a WAL
  being reset, another process holding the file), `one_async` hands that same lookup to `in_thread`,
  whose connection waits (`one(wait=False)` raises WouldBlock instead).
- PostgreSQL, in a thread (`one`): a connection from a small pool of the lookups' own (`_DriverPool`),
  in autocommit (no BEGIN / ROLLBACK round trips), the statement prepared server-side once per
  connection and run on libpq itself (`pgconn.exec_prepared`, rows in binary): psycopg's cursor
  around the same call (its query conversion, adapters, prepared-statement bookkeeping, row maker)
  cost ~35 of ~50 µs of CPU (docs/benchmarks.md, "Cache misses on PostgreSQL"); a lookup returning a
  column type not decoded here (`_DECODERS`) runs on the connection's cursor instead. `one` never
  runs on the event loop (`wait=False` raises WouldBlock): it is a network round trip, and only one:
  no BEGIN, no ping (the engine's pool used to ping each connection it handed out, a second round
  trip that was half of a lookup's time and CPU). A lookup that finds its connection
  dropped (a restart, a failover) drops every connection of the pool and runs once more on a new one,
  as a transaction of `Database.read` / `write` does at its BEGIN (db.session). It is a list of
  driver connections, not a SQLAlchemy pool: checking a connection out of a QueuePool and back in
  (its record, the reset's ROLLBACK call on an autocommit connection, the events) cost about a third
  of a lookup's CPU.
- PostgreSQL, on the event loop (`one_async`): no thread at all. Each loop has one connection in
  libpq's pipeline mode (`_LoopPipe`); the lookups its requests ask for in one pass of the loop are
  sent in one network write as one batch, and each request gets its row when the loop sees the
  answers come in. A thread's lookup cost a hand-off to the thread and back, and a round trip of its
  own; with many requests in flight, a batch costs the server one receive, one transaction and one
  send for all of them (docs/benchmarks.md, "At scale"). A lookup with a parameter or column type
  libpq is not used for here goes to `in_thread` (`one` on a pooled connection, the cursor's way).

Errors come out as SQLAlchemy's DBAPIError subclasses, as from a Connection, so the API's one
mapping of database errors (503 for an unavailable database) applies unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping
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


# How `Lookups.one_async` hands a lookup to a worker thread: `await in_thread(fn, *args)` is `fn(*args)`
# run in a thread (`asyncio.to_thread`; the /v2 hot paths' point-read threads, api/oci/point_reads.py).
InThread = Callable[..., Awaitable[Any]]


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
        self._pipes: dict[int, _LoopPipe] = {}  # PostgreSQL's for `one_async`, by id(event loop)

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

    async def one_async(
        self, lookup: Lookup, values: Mapping[str, Any], in_thread: InThread
    ) -> tuple[Any, ...] | None:
        """`one` for the running event loop, which it never blocks; the parameters are prepared once,
        whichever way the lookup then runs:
        - SQLite: on the loop itself, at once (no await that suspends) when the read need not wait;
          when it would (a writer holds the file), `in_thread(fn, *args)` runs it in a thread, waiting;
        - PostgreSQL: in the loop's pipelined batch (`_LoopPipe`); a lookup with a parameter or
          column type libpq is not used for here goes to `in_thread`, on a pooled connection;
        - an in-memory SQLite: `in_thread`, on the engine's one connection.
        `in_thread` is the caller's hand-off to a worker thread (the /v2 point-read threads)."""
        parameters = lookup.parameters(values)
        if self._sqlite_path is not None:
            try:
                return self._sqlite_one(lookup, parameters, False)
            except WouldBlock:
                return await in_thread(self._sqlite_one, lookup, parameters, True)
        if self._dialect == "postgresql" and lookup.libpq_sql and lookup.decoders != ():
            libpq_values = _libpq_values(lookup, parameters)
            if libpq_values is not None:
                try:
                    return await self._loop_pipe().one(lookup, libpq_values)
                except WouldBlock:  # a column type not decoded here, found at its first row
                    pass
        return await in_thread(self._pooled_one, lookup, parameters)

    def _loop_pipe(self) -> _LoopPipe:
        loop = asyncio.get_running_loop()
        pipe = self._pipes.get(id(loop))
        if pipe is None or pipe.loop is not loop or pipe.closed or pipe.pid != os.getpid():
            pipe = self._new_pipe(loop)
        return pipe

    def _new_pipe(self, loop: asyncio.AbstractEventLoop) -> _LoopPipe:
        with self._pool_lock:
            self._forget_if_forked()
            for key, old in list(self._pipes.items()):  # those of loops that are gone, closed now
                if old.loop.is_closed() or old.closed or old.loop is loop:
                    del self._pipes[key]
                    old.close()
            pipe = self._pipes[id(loop)] = _LoopPipe(self._engine, loop)
        return pipe

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
            pipes, self._pipes = list(self._pipes.values()), {}
        if pool is not None:
            pool.dispose()
        for pipe in pipes:
            pipe.close()

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
                self._forget_if_forked()
                if self._pool is None:
                    self._pool = _DriverPool(self._engine)
                pool = self._pool
        return pool

    def _forget_if_forked(self) -> None:
        """Under `_pool_lock`: in a forked child, the parent's connections are not ours to use."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._local = threading.local()
            self._opened = []
            self._pool = None
            self._pipes = {}

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
    values = _libpq_values(lookup, parameters)
    if values is None:
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
    return _decoded(lookup, result)


def _libpq_values(lookup: Lookup, parameters: Any) -> list[bytes | None] | None:
    """The parameters as libpq takes them (text), or None when one is not text, an integer or NULL."""
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
            return None
    return values


def _decoded(lookup: Lookup, result: Any) -> Any:
    """The first row of a binary result as the cursor would give it; None without one; _NOT_HERE when a
    column's type is not decoded here."""
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


# libpq's PGRES_PIPELINE_SYNC, PGRES_PIPELINE_ABORTED and CONNECTION_BAD (psycopg.pq.ExecStatus,
# ConnStatus), as plain ints like _RESULT_OK.
_PIPELINE_SYNC = 10
_PIPELINE_ABORTED = 11
_CONNECTION_BAD = 1


class _Pending:
    """A lookup waiting for its row in a `_LoopPipe`."""

    __slots__ = ("future", "lookup", "result", "tries", "values")

    def __init__(self, lookup: Lookup, values: list[bytes | None], future: asyncio.Future[Any]) -> None:
        self.lookup = lookup
        self.values = values
        self.future = future
        self.result: Any = None  # the statement's PGresult, once it came
        self.tries = 0  # times sent: again once (SENDS) after its connection broke, or its batch was aborted


class _Prepared:
    """A statement being prepared in a `_LoopPipe` (its name), ahead of its first execution."""

    __slots__ = ("name", "result")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.result: Any = None


_SYNC = object()  # the end of a batch in a _LoopPipe's `_sent`
SENDS = 2  # times a loop lookup is sent at most (db.lookups._LoopPipe)


class _LoopPipe:
    """One PostgreSQL connection of an event loop for its lookups, in libpq's pipeline mode
    (`Lookups.one_async`): the lookups asked for in one pass of the loop go to the server in one
    network write, as one batch (one implicit transaction, one Sync: the server reads them with one
    receive and answers with one send), and their rows come back in order as the socket becomes
    readable, without a thread, a hand-off or a wait of the loop. Only the connection is made in a
    thread (connecting blocks).

    A lookup whose connection broke (a restart, a failover: the socket reports it, or a send fails) or
    whose batch another lookup's error aborted is sent once more, on a new connection if need be; a
    second failure is the caller's, wrapped as SQLAlchemy's (so an unreachable database is a 503).
    Used only on its loop's thread; `close` from another thread hands itself to the loop."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self.loop = loop
        self.pid = os.getpid()
        self._connection: Any = None  # a psycopg Connection, in autocommit; its pgconn is all we use
        self._pgconn: Any = None
        self._fd = -1
        self._connecting = False
        self._writing = False
        self._send_soon = False
        self._queued: list[_Pending] = []  # not sent yet
        self._sent: collections.deque[Any] = collections.deque()  # _Prepared, _Pending, _SYNC in order
        self._prepared: set[bytes] = set()
        self._last_error: Exception | None = None  # of the last batch that failed
        self.closed = False

    def one(self, lookup: Lookup, values: list[bytes | None]) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self._queue(_Pending(lookup, values, future))
        return future

    def _queue(self, pending: _Pending) -> None:
        self._queued.append(pending)
        if not self._send_soon:  # after the loop's other ready callbacks: their lookups join the batch
            self._send_soon = True
            self.loop.call_soon(self._send)

    def _send(self) -> None:
        self._send_soon = False
        if not self._queued:
            return
        if self.closed:
            self._fail_all(self._queued, sa_exc.ResourceClosedError("the database's lookups are closed"))
            self._queued = []
            return
        pgconn = self._pgconn
        if pgconn is None:
            if not self._connecting:
                self._connecting = True
                connecting = self.loop.run_in_executor(None, self._connect)
                connecting.add_done_callback(self._connected)
            return
        batch, self._queued = self._queued, []
        sent = self._sent
        try:
            for pending in batch:
                pending.tries += 1
                lookup = pending.lookup
                name = lookup.prepared_name
                if name not in self._prepared:
                    self._prepared.add(name)
                    sent.append(_Prepared(name))
                    pgconn.send_prepare(name, lookup.libpq_sql)
                sent.append(pending)
                pgconn.send_query_prepared(name, pending.values, result_format=1)
            sent.append(_SYNC)
            pgconn.pipeline_sync()
            self._flush()
        except self._engine.dialect.loaded_dbapi.Error as exc:
            self._broken(exc, [pending for pending in batch if pending not in sent])

    def _flush(self) -> None:
        if self._pgconn.flush():  # more to send than the socket took: the rest once it is writable
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self._fd, self._on_writable)
        elif self._writing:
            self._writing = False
            self.loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        try:
            self._flush()
        except self._engine.dialect.loaded_dbapi.Error as exc:
            self._broken(exc, [])

    def _on_readable(self) -> None:
        pgconn = self._pgconn
        sent = self._sent
        try:
            pgconn.consume_input()
            while sent and not pgconn.is_busy():
                head = sent[0]
                result = pgconn.get_result()
                if head is _SYNC:  # not followed by a NULL, unlike a statement's results
                    if result is None or result.status != _PIPELINE_SYNC:
                        raise self._engine.dialect.loaded_dbapi.OperationalError(
                            "lookups: the server's answers are out of step with the statements sent"
                        )
                    sent.popleft()
                elif result is None:  # the end of this statement's results
                    sent.popleft()
                    self._settle(head)
                elif head.result is None:
                    head.result = result
            if pgconn.status == _CONNECTION_BAD:
                raise self._engine.dialect.loaded_dbapi.OperationalError(
                    "the connection to the server was lost"
                )
        except self._engine.dialect.loaded_dbapi.Error as exc:
            self._broken(exc, [])

    def _settle(self, item: Any) -> None:
        result = item.result
        status = None if result is None else result.status
        if isinstance(item, _Prepared):
            if status not in _RESULT_OK:
                self._prepared.discard(item.name)
                if status is not None and status != _PIPELINE_ABORTED:
                    self._last_error = self._error(result)
            return
        future = item.future
        if future.done():  # its caller went away
            return
        if status in _RESULT_OK:
            row = _decoded(item.lookup, result)
            if row is _NOT_HERE:
                future.set_exception(WouldBlock())
            else:
                future.set_result(row)
            return
        error = self._last_error if status == _PIPELINE_ABORTED and self._last_error else None
        if error is None:
            error = self._error(result)
            self._last_error = error
        # Another lookup's error aborted the batch, or the server is ending the connection (a restart):
        # again, on this connection or the next.
        again = status == _PIPELINE_ABORTED or str(getattr(error, "sqlstate", "")).startswith(("08", "57P"))
        if again and item.tries < SENDS:
            item.result = None
            self._queue(item)
        else:
            future.set_exception(self._wrapped(item.lookup, error))

    def _error(self, result: Any) -> Exception:
        from psycopg import errors

        if result is None:
            return errors.OperationalError("lookups: no result from the server")
        return errors.error_from_result(result, encoding="utf-8")

    def _broken(self, exc: Exception, unsent: list[_Pending]) -> None:
        """The connection failed: drop it; what it had not answered is sent again on a new one, once."""
        waiting = [item for item in self._sent if isinstance(item, _Pending)] + unsent + self._queued
        self._sent.clear()
        self._queued = []
        self._drop_connection()
        for pending in waiting:
            if pending.future.done():
                continue
            if pending.tries < SENDS and not self.closed:
                pending.result = None
                self._queue(pending)
            else:
                wrapped = self._wrapped(pending.lookup, exc)
                wrapped.connection_invalidated = True
                pending.future.set_exception(wrapped)

    def _connect(self) -> Any:
        """A new connection, made as the engine makes its own (in a thread: connecting blocks)."""
        engine_pool: Any = self._engine.pool
        connection = engine_pool._creator()
        try:
            on_connect = self._engine.dialect.on_connect()
            if on_connect is not None:
                on_connect(connection)
            connection.autocommit = True
        except BaseException:
            connection.close()
            raise
        return connection

    def _connected(self, connecting: asyncio.Future[Any]) -> None:
        self._connecting = False
        try:
            connection = connecting.result()
        except Exception as exc:  # the database is unreachable: every lookup waiting fails as such
            waiting, self._queued = self._queued, []
            self._fail_all(waiting, exc)
            return
        if self.closed:
            connection.close()
            self._send()
            return
        if connection.info.encoding != "utf-8":  # the bytes decoded here are UTF-8: on the cursor then
            connection.close()
            waiting, self._queued = self._queued, []
            for pending in waiting:
                pending.lookup.decoders = ()
                if not pending.future.done():
                    pending.future.set_exception(WouldBlock())
            return
        pgconn = connection.pgconn
        pgconn.nonblocking = 1
        pgconn.enter_pipeline_mode()
        self._connection, self._pgconn, self._fd = connection, pgconn, pgconn.socket
        self.loop.add_reader(self._fd, self._on_readable)
        self._send()

    def _fail_all(self, waiting: list[_Pending], exc: Exception) -> None:
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(self._wrapped(pending.lookup, exc))

    def _wrapped(self, lookup: Lookup, exc: Exception) -> sa_exc.StatementError:
        if isinstance(exc, sa_exc.StatementError):
            return exc
        return sa_exc.DBAPIError.instance(lookup.sql, None, exc, self._engine.dialect.loaded_dbapi.Error)

    def _drop_connection(self) -> None:
        connection, self._connection, self._pgconn = self._connection, None, None
        self._prepared = set()
        if connection is None:
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self._fd)
            if self._writing:
                self.loop.remove_writer(self._fd)
        self._writing, self._fd = False, -1
        if self.pid == os.getpid():  # a forked child's copy: the socket is the parent's to close
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        """Close the connection; lookups still waiting fail. From any thread."""
        self.closed = True
        if self.pid != os.getpid():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop and self.loop.is_running():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._close_now)
                return
        self._close_now()

    def _close_now(self) -> None:
        waiting = [item for item in self._sent if isinstance(item, _Pending)] + self._queued
        self._sent.clear()
        self._queued = []
        self._drop_connection()
        self._fail_all(waiting, sa_exc.ResourceClosedError("the database's lookups are closed"))
