"""Retention's DB tests run twice: on SQLite and on a throwaway PostgreSQL (one per test session)."""

from __future__ import annotations

import pytest

from dockyard.db.session import Database


@pytest.fixture
def db(database: Database) -> Database:
    return database
