"""Retention's DB tests run twice: on SQLite and on a throwaway PostgreSQL (one per test session)."""

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server: the one `make test-postgres` runs (DOCKYARD_TEST_POSTGRES_URL), else our own."""
    url = os.environ.get("DOCKYARD_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    with throwaway_postgres(max_connections=50) as cluster:
        yield cluster.database_url("postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"retention_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        engine = build_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    upgrade(engine)
    database = Database(engine)
    yield database
    database.dispose()
