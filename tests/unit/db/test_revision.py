"""The schema check at every start (`db.revision`): one SELECT against the head read from the migration
files, Alembic only when there is something to do; on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, text

from dockyard.db.engine import build_engine
from dockyard.db.migrate import alembic_config, current_revision, upgrade
from dockyard.db.revision import at_head, database_revisions, ensure_current, head_revisions
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        cluster: PostgresServer = request.getfixturevalue("postgres_server")
        url = cluster.create_database("revision")
    engine = build_engine(url)
    yield engine
    engine.dispose()


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert head_revisions() == set(ScriptDirectory.from_config(alembic_config(None)).get_heads())


def test_a_new_database_is_migrated_to_the_head(engine: Engine) -> None:
    assert database_revisions(engine) == frozenset()
    assert not at_head(engine)
    ensure_current(engine)
    assert at_head(engine)
    assert {current_revision(engine)} == set(head_revisions())


def test_a_database_one_revision_behind_is_migrated(engine: Engine) -> None:
    upgrade(engine, "0001_baseline")
    assert not at_head(engine)
    ensure_current(engine)
    assert {current_revision(engine)} == set(head_revisions())


def test_a_database_of_a_newer_dockyard_is_refused(engine: Engine) -> None:
    """An unknown revision (a newer dockyard's schema) goes to Alembic, which refuses it as before."""
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    assert not at_head(engine)
    with pytest.raises(CommandError, match="Can't locate revision identified by '0099_from_the_future'"):
        ensure_current(engine)


def test_a_database_at_the_head_is_checked_without_loading_alembic(engine: Engine) -> None:
    """What every start of a node does (Alembic took ~0.2 s of each to load)."""
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    script = (
        "import sys\n"
        "from dockyard.db.engine import build_engine\n"
        "from dockyard.db.revision import ensure_current\n"
        f"ensure_current(build_engine({url!r}))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
