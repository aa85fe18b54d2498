"""db.lookups: point reads on raw driver connections fail the way SQLAlchemy's do (so the API's one
mapping applies: 503 for an unavailable database), and close with the Database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from dockyard.api.oci.errors import render_error
from dockyard.db.engine import build_engine
from dockyard.db.lookups import POSTGRES_LOOKUP_OVERFLOW, POSTGRES_LOOKUP_POOL_SIZE
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database, database_unavailable
from dockyard.registry.models import Repository
from tests.support.postgres import PostgresServer
from tests.support.server import free_port

BY_NAME = select(Repository.id).where(Repository.name == bindparam("name"))


def test_an_unreachable_postgresql_is_a_503_from_a_lookup_too() -> None:
    db = Database(build_engine(f"postgresql://dockyard@127.0.0.1:{free_port()}/nothing"))
    try:
        # More lookups than the pool has connections: a failed connect gives its place back, so each
        # fails at once for what it is, never by waiting for a connection that will not come.
        for _ in range(POSTGRES_LOOKUP_POOL_SIZE + POSTGRES_LOOKUP_OVERFLOW + 2):
            with pytest.raises(sa_exc.OperationalError) as raised:
                db.lookups.one(db.lookups.prepare(BY_NAME), {"name": "team/app"})
            assert database_unavailable(raised.value)
    finally:
        db.dispose()
    assert render_error(raised.value).status_code == 503


def test_a_sqlite_lookup_error_is_sqlalchemys_and_connections_close_with_the_database(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    db = Database(engine)
    lookup = db.lookups.prepare(BY_NAME)
    with pytest.raises(sa_exc.OperationalError):  # not migrated: no such table
        db.lookups.one(lookup, {"name": "team/app"})
    upgrade(engine)
    assert db.lookups.one(lookup, {"name": "team/app"}) is None
    assert db.lookups.one(lookup, {"name": "team/app"}, wait=False) is None
    db.dispose()
    (tmp_path / "dockyard.db").unlink()  # closed: a new lookup opens a new connection, on a new file
    with pytest.raises(sa_exc.OperationalError):
        db.lookups.one(lookup, {"name": "team/app"})


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[Database]:
    db = Database(build_engine(postgres_server.create_database("lookups", migrated=True)))
    yield db
    db.dispose()


@pytest.mark.db_independent
def test_a_postgresql_lookup_is_one_round_trip_without_the_pools_ping(postgres_db: Database) -> None:
    """The engine's pool pinged every connection it handed out: for a one-statement lookup that was a
    second round trip, half of a cache miss's time (docs/benchmarks.md, "At scale")."""
    engine = postgres_db.engine
    pings: list[object] = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(connection) or ping(connection)  # type: ignore[method-assign]
    lookup = postgres_db.lookups.prepare(BY_NAME)
    for _ in range(5):
        assert postgres_db.lookups.one(lookup, {"name": "team/app"}) is None
    assert pings == []


@pytest.mark.db_independent
def _drop_other_connections(database: Database) -> int:
    """What a restart or a failover does to the lookups' connections: each is terminated by the server."""
    with database.engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def test_a_postgresql_lookup_survives_the_server_dropping_its_connections(postgres_db: Database) -> None:
    """What the ping was for: after a restart or a failover, the first lookup does not fail."""
    lookups = postgres_db.lookups
    lookup = lookups.prepare(BY_NAME)
    assert lookups.one(lookup, {"name": "team/app"}) is None  # the pool now holds an open connection
    assert _drop_other_connections(postgres_db) >= 1
    assert lookups.one(lookup, {"name": "team/app"}) is None
    # As many lookups at once as the pool allows still get a connection each: the dropped ones gave
    # their places back.
    with ThreadPoolExecutor(POSTGRES_LOOKUP_POOL_SIZE + POSTGRES_LOOKUP_OVERFLOW) as threads:
        rows = list(threads.map(lambda _: lookups.one(lookup, {"name": "team/app"}), range(40)))
    assert rows == [None] * 40


@pytest.mark.db_independent
def test_a_postgresql_lookup_gives_the_values_the_cursor_would(postgres_db: Database) -> None:
    """Lookups run on libpq itself with rows in binary, decoded here by column type: each type comes
    out as psycopg's cursor gives it; a row with a type not decoded here (a timestamp) still comes,
    through the cursor; parameters are text, integers and NULL, a name used twice is one."""
    lookups = postgres_db.lookups
    decoded = lookups.prepare(
        text(
            "SELECT CAST(:name AS VARCHAR), CAST(:name AS TEXT) || ' 50%', CAST(:size AS BIGINT), "
            "CAST(:size AS INTEGER) * -1, CAST(:small AS SMALLINT), decode('00ff', 'hex'), true, false, "
            "CAST(:nothing AS TEXT), CAST('é' AS VARCHAR)"
        )
    )
    values = {"name": "team/app", "size": 123_456, "small": -7, "nothing": None}
    expected = ("team/app", "team/app 50%", 123_456, -123_456, -7, b"\x00\xff", True, False, None, "é")
    for _ in range(3):  # prepared on first use, then run prepared on the same or another connection
        assert lookups.one(decoded, values) == expected
    big = lookups.prepare(text("SELECT CAST(:size AS BIGINT) + 1"))
    assert lookups.one(big, {"size": 2**40}) == (2**40 + 1,)
    timestamped = lookups.prepare(text("SELECT CAST(:name AS TEXT), TIMESTAMPTZ '2026-01-02 03:04:05+00'"))
    for _ in range(2):
        row = lookups.one(timestamped, {"name": "team/app"})
        assert row is not None and row[0] == "team/app" and row[1].year == 2026
    empty = lookups.prepare(text("SELECT 1 WHERE CAST(:name AS TEXT) = 'nobody'"))
    assert lookups.one(empty, {"name": "team/app"}) is None
    broken = lookups.prepare(text("SELECT CAST(:name AS INTEGER)"))
    with pytest.raises(sa_exc.DataError):  # the driver's error, wrapped as from a Connection
        lookups.one(broken, {"name": "not a number"})
    assert lookups.one(decoded, values) == expected  # the connection that failed serves on


@pytest.mark.db_independent
def test_threads_that_first_run_a_lookup_not_decoded_here_all_get_their_rows(postgres_db: Database) -> None:
    """The first threads to run a lookup with a type not decoded here (a timestamp) all get the whole row:
    one of them finding out, while the others wait on the server, does not leave them an empty one."""
    lookups = postgres_db.lookups
    threads = POSTGRES_LOOKUP_POOL_SIZE
    statement = text("SELECT CAST(:name AS TEXT), TIMESTAMPTZ '2026-01-02 03:04:05+00'")
    for _ in range(20):  # a new lookup each time: its decoders not yet known
        timestamped = lookups.prepare(statement)
        start = threading.Barrier(threads)

        def first_look(lookup: Any = timestamped, barrier: threading.Barrier = start) -> Any:
            barrier.wait()
            return lookups.one(lookup, {"name": "team/app"})

        with ThreadPoolExecutor(threads) as pool:
            rows = list(pool.map(lambda _: first_look(), range(threads)))
        assert all(row is not None and len(row) == 2 and row[0] == "team/app" for row in rows), rows


# --- lookups on the event loop (`Lookups.one_async`: PostgreSQL's pipelined batches) -----------------


async def no_thread(fn: Callable[..., Any], *args: Any) -> Any:
    raise AssertionError(f"a lookup was handed to a thread: {fn.__qualname__}")


class Threads:
    """`in_thread` for `one_async`: runs the call in a thread and notes what it was handed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn.__name__)
        return await asyncio.to_thread(fn, *args)


def on_loop(db: Database, lookup: Any, values: dict[str, Any], in_thread: Any = no_thread) -> Any:
    return asyncio.run(db.lookups.one_async(lookup, values, in_thread))


@pytest.mark.db_independent
def test_lookups_on_the_loop_give_the_rows_the_cursor_would_all_at_once(postgres_db: Database) -> None:
    """Many lookups asked for at once on one loop go out together and each gets its own row, as the
    cursor gives it; a lookup whose statement fails gets its error and leaves the others' rows whole
    (the batch it aborted runs again); the connection serves on."""
    lookups = postgres_db.lookups
    decoded = lookups.prepare(
        text(
            "SELECT CAST(:name AS VARCHAR), CAST(:size AS BIGINT) * -1, decode('00ff', 'hex'), true, "
            "CAST(:nothing AS TEXT), CAST('é' AS VARCHAR)"
        )
    )
    empty = lookups.prepare(text("SELECT 1 WHERE CAST(:name AS TEXT) = 'nobody'"))
    broken = lookups.prepare(text("SELECT CAST(:name AS INTEGER)"))

    async def many() -> list[Any]:
        calls: list[Any] = []
        for number in range(60):
            if number == 30:
                calls.append(lookups.one_async(broken, {"name": "not a number"}, no_thread))
            calls.append(
                lookups.one_async(decoded, {"name": f"r{number}", "size": number, "nothing": None}, no_thread)
            )
            calls.append(lookups.one_async(empty, {"name": f"r{number}"}, no_thread))
        return await asyncio.gather(*calls, return_exceptions=True)

    for _ in range(2):  # prepared in the first batch, run prepared in the next
        answers = asyncio.run(many())
        assert isinstance(answers[60], sa_exc.DataError)  # the driver's error, wrapped as a Connection's
        rows = answers[:60] + answers[61:]
        assert rows == [row for n in range(60) for row in ((f"r{n}", -n, b"\x00\xff", True, None, "é"), None)]
    assert on_loop(postgres_db, decoded, {"name": "x", "size": 1, "nothing": None}) == (
        "x",
        -1,
        b"\x00\xff",
        True,
        None,
        "é",
    )


@pytest.mark.db_independent
def test_a_lookup_the_loop_cannot_run_goes_to_the_thread_once(postgres_db: Database) -> None:
    """A column type not decoded here (a timestamp: found at the first row, then known before sending)
    or a parameter libpq is not handed here: `one_async` hands the lookup to the thread, once."""
    lookups = postgres_db.lookups
    timestamped = lookups.prepare(text("SELECT CAST(:name AS TEXT), TIMESTAMPTZ '2026-01-02 03:04:05+00'"))
    for _ in range(2):
        threads = Threads()
        row = on_loop(postgres_db, timestamped, {"name": "team/app"}, threads)
        assert row is not None and row[0] == "team/app" and row[1].year == 2026
        assert threads.calls == ["_pooled_one"]
    threads = Threads()
    sized = lookups.prepare(text("SELECT length(CAST(:data AS BYTEA))"))
    assert on_loop(postgres_db, sized, {"data": b"abc"}, threads) == (3,)
    assert threads.calls == ["_pooled_one"]


def test_on_sqlite_a_lookup_runs_on_the_loop_at_once(tmp_path: Path) -> None:
    """No thread, and no suspension: the coroutine is done at its first step. An in-memory SQLite (its
    one connection is the engine's) goes to the thread."""
    db = Database(build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}"))
    try:
        upgrade(db.engine)
        step = db.lookups.one_async(db.lookups.prepare(BY_NAME), {"name": "team/app"}, no_thread)
        with pytest.raises(StopIteration) as done:
            step.send(None)
        assert done.value.value is None
    finally:
        db.dispose()
    shared = {"check_same_thread": False}
    memory = Database(create_engine("sqlite://", poolclass=StaticPool, connect_args=shared))
    try:
        threads = Threads()
        echo = memory.lookups.prepare(text("SELECT :name"))
        assert on_loop(memory, echo, {"name": "team/app"}, threads) == ("team/app",)
        assert threads.calls == ["_pooled_one"]
    finally:
        memory.dispose()


@pytest.mark.db_independent
def test_lookups_on_the_loop_survive_the_server_dropping_their_connection(postgres_db: Database) -> None:
    lookups = postgres_db.lookups
    lookup = lookups.prepare(BY_NAME)

    async def scenario() -> list[Any]:
        assert await lookups.one_async(lookup, {"name": "team/app"}, no_thread) is None  # connected, prepared
        assert _drop_other_connections(postgres_db) >= 1
        # At once (the loop has not seen the connection go yet) and a moment later (it has).
        first = await asyncio.gather(
            *(lookups.one_async(lookup, {"name": "team/app"}, no_thread) for _ in range(10))
        )
        await asyncio.sleep(0.2)
        return [*first, await lookups.one_async(lookup, {"name": "team/app"}, no_thread)]

    assert asyncio.run(scenario()) == [None] * 11


def test_an_unreachable_postgresql_is_a_503_from_a_loop_lookup_too() -> None:
    db = Database(build_engine(f"postgresql://dockyard@127.0.0.1:{free_port()}/nothing"))
    try:
        for _ in range(2):
            with pytest.raises(sa_exc.OperationalError) as raised:
                on_loop(db, db.lookups.prepare(BY_NAME), {"name": "team/app"})
            assert database_unavailable(raised.value)
    finally:
        db.dispose()
    assert render_error(raised.value).status_code == 503


@pytest.mark.db_independent
def test_a_cancelled_loop_lookup_leaves_the_others_their_rows(postgres_db: Database) -> None:
    lookups = postgres_db.lookups
    pause = "pg_sleep(CAST(:pause AS INTEGER) / 10.0)"
    echo = lookups.prepare(text(f"SELECT CAST(:name AS TEXT), CAST(:pause AS INTEGER) FROM {pause}"))

    async def scenario() -> list[Any]:
        slow = asyncio.ensure_future(lookups.one_async(echo, {"name": "slow", "pause": 3}, no_thread))
        others = [
            asyncio.ensure_future(lookups.one_async(echo, {"name": f"n{n}", "pause": 0}, no_thread))
            for n in range(5)
        ]
        await asyncio.sleep(0.05)
        slow.cancel()
        answers = await asyncio.gather(*others)
        with pytest.raises(asyncio.CancelledError):
            await slow
        return [*answers, await lookups.one_async(echo, {"name": "after", "pause": 0}, no_thread)]

    assert asyncio.run(scenario()) == [(f"n{n}", 0) for n in range(5)] + [("after", 0)]
