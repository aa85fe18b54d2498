"""Migration 0015 makes usernames unique whatever their case, on SQLite and PostgreSQL: names that
clash already keep the oldest account's spelling, the later ones are renamed `<name>-<id>`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.db_independent


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_server")
    return cluster.create_database("usernames", migrated=False)


def insert_user(connection: object, user_id: int, name: str) -> None:
    connection.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO users (id, username, source, admin, directory_admin, disabled, created_at, "
            "updated_at) VALUES (:id, :name, 'local', false, false, false, :at, :at)"
        ),
        {"id": user_id, "name": name, "at": "2026-01-01 00:00:00+00:00"},
    )


def test_clashing_names_are_renamed_and_new_clashes_refused(unmigrated_url: str) -> None:
    engine = build_engine(unmigrated_url)
    try:
        upgrade(engine, "0014_login_sessions")
        with engine.begin() as connection:
            for user_id, name in [(1, "admin"), (2, "Admin"), (3, "ADMIN"), (4, "Admin-2"), (5, "bob")]:
                insert_user(connection, user_id, name)
        upgrade(engine)
        with engine.connect() as connection:
            names = dict(connection.execute(text("SELECT id, username FROM users")).all())
        # "Admin-2" was taken (in another case too), so id 2 gets the next free name.
        assert names == {1: "admin", 2: "Admin-2-1", 3: "ADMIN-3", 4: "Admin-2", 5: "bob"}
        with pytest.raises(IntegrityError), engine.begin() as connection:
            insert_user(connection, 6, "BOB")
    finally:
        engine.dispose()
