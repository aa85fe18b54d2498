"""Apply the Alembic migrations shipped inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(None)).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def current_revision(engine: Engine) -> str | None:
    """The schema's revision (None before the first migration). The history is linear
    (tests/unit/db/test_migrations.py), so there is one; several would be joined by '+'."""
    return "+".join(sorted(current_revisions(engine))) or None


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the schema to `revision`. Idempotent; safe to call at every start."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # Serialise concurrent upgrades from several nodes on one advisory lock. A transaction-level
            # lock ends with the commit below: a session-level one would stay with the pooled
            # connection, and every other node or worker's upgrade would wait on it for good.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        command.upgrade(alembic_config(connection), revision)
        connection.commit()


def is_up_to_date(engine: Engine) -> bool:
    return current_revisions(engine) == head_revisions()
