"""Migration 0009_project_policies backfills each project's usage from the links and manifests already
there: each distinct digest once per project (SQLite; PostgreSQL in the DOCKYARD_TEST_DB pass)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade


@pytest.mark.db_independent
def test_usage_is_backfilled_from_existing_links_and_manifests(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0006_manifest_pull_time")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO projects (id, name, public, created_at, updated_at) VALUES "
                "(1, 'team', 0, '2026-01-01', '2026-01-01'), (2, 'other', 0, '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO repositories (id, name, created_at, project_id) VALUES "
                "(1, 'team/a', '2026-01-01', 1), (2, 'team/b', '2026-01-01', 1), "
                "(3, 'other/c', '2026-01-01', 2)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO blobs (digest, size, created_at) VALUES "
                "('sha256:x', 1000, '2026-01-01'), ('sha256:y', 30, '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES "
                "(1, 'sha256:x', '2026-01-01'), (2, 'sha256:x', '2026-01-01'), "
                "(2, 'sha256:y', '2026-01-01'), (3, 'sha256:x', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO manifests (repository_id, digest, media_type, size, content, "
                "created_at) VALUES (1, 'sha256:m', 'x', 5, X'0102030405', '2026-01-01'), "
                "(2, 'sha256:m', 'x', 5, X'0102030405', '2026-01-01')"
            )
        )
    upgrade(engine)
    with engine.connect() as connection:
        used: dict[str, int] = dict(
            connection.execute(text("SELECT name, quota_used_bytes FROM projects")).all()
        )
        limits = set(
            connection.execute(text("SELECT quota_limit_bytes, quota_warn_percent FROM projects")).all()
        )
    assert used == {"team": 1000 + 30 + 5, "other": 1000}
    assert limits == {(None, 80)}
    engine.dispose()
