"""Fixtures for tests that run on SQLite and on PostgreSQL by themselves, whatever pass they are in (they
are marked db_independent, so the PostgreSQL pass does not run them a second time).

tests/conftest.py loads them as a plugin, so any test may ask for `database` (or `database_url`): it then
runs twice, once per database, each time on a fresh migrated one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.postgres_shared import shared_postgres
from tests.support.sqlite_template import copy_migrated_sqlite


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The run's throwaway PostgreSQL, shared with its other test processes
    (tests/support/postgres_shared.py): a database of its own on it for each test that asks."""
    with shared_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def own_postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of the module's own, for tests that break their cluster for everyone on it: a
    tablespace filled up (the full-disk tests) fails every checkpoint of its cluster, and with them the
    `CREATE DATABASE` of other tests on a shared one (it asks for a checkpoint)."""
    cluster = start_postgres()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, then a PostgreSQL one (a copy of a migrated template). Empty on
    SQLite: `database` migrates it (a copy of tests/support/sqlite_template.py's template)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dockyard.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database("both", migrated=True)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    if database_url.startswith("sqlite:///"):
        copy_migrated_sqlite(Path(database_url.removeprefix("sqlite:///")))
    engine = build_engine(database_url)
    upgrade(engine)  # a no-op: both are copies of a migrated template
    # No WAL flush per commit on SQLite (`database.flush_commits`, as the servers tests start): the
    # flush's own tests are tests/unit/db/test_durable_commit.py.
    database = Database(engine, flush_commits=False)
    yield database
    database.dispose()


_LOCK_WAITS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def lock_waits(database: Database) -> int:
    """PostgreSQL: how many sessions on this database wait for another transaction's lock (a race test
    holding one side in its transaction knows the other side got as far as waiting for it)."""
    with database.read() as connection:
        return int(connection.scalar(_LOCK_WAITS) or 0)
