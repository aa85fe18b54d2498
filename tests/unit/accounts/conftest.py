from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.db.session import Database
from tests.unit.accounts.fixtures import Services, migrated_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_database(tmp_path)
    yield database
    database.dispose()


@pytest.fixture
def services(db: Database) -> Services:
    return Services.on(db)
