"""The collector's tests run on SQLite and on PostgreSQL (a throwaway cluster, one database per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from tests.support.postgres import throwaway_postgres
from tests.unit.gc.fixtures import Env


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL: the one DOCKYARD_TEST_POSTGRES_URL names, else a throwaway cluster."""
    given = os.environ.get("DOCKYARD_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    with throwaway_postgres(max_connections=100) as cluster:
        yield cluster.database_url("postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"dockyard_gc_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        engine = build_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    upgrade(engine)
    database = Database(engine)
    yield database
    database.dispose()


@pytest.fixture
def env(db: Database, tmp_path: Path) -> Env:
    return Env.on(db, tmp_path / "storage")
