"""The vulnerability database's DB tests run twice: on SQLite and on a throwaway PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.db.session import Database

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "vulndb"


@pytest.fixture
def db(database: Database) -> Database:
    return database
