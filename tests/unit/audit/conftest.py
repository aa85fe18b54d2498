"""A migrated database per test, on SQLite and on a real PostgreSQL the tests start themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from tests.support.postgres import PostgresCluster, throwaway_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    with throwaway_postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_server")
        url = cluster.create_database("audit")
    engine = build_engine(url)
    upgrade(engine)
    database = Database(engine)
    yield database
    database.dispose()
