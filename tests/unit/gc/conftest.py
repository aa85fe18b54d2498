"""The collector's tests run on SQLite and on PostgreSQL (a throwaway cluster, one database per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.db.session import Database
from tests.unit.gc.fixtures import Env


@pytest.fixture
def db(database: Database) -> Database:
    return database


@pytest.fixture
def env(db: Database, tmp_path: Path) -> Env:
    return Env.on(db, tmp_path / "storage")
