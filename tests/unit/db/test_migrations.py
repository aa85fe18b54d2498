"""The migrations: one linear history from one base, and a migrated database that is exactly the schema
the models declare, on SQLite and on PostgreSQL (each test here runs on both: a fresh, empty database
that the migrations build from nothing)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import IntegrityError

import dockyard
from dockyard.db.all_models import load_all_models, model_modules
from dockyard.db.base import Base
from dockyard.db.engine import build_engine
from dockyard.db.migrate import alembic_config, upgrade
from dockyard.maintenance.tables import MIGRATION_TABLES
from tests.support.postgres import PostgresServer

# SQLite cannot reflect the expression index on lower(username), so compare_metadata skips it, with
# these warnings; test_the_migrated_indexes_and_checks_are_the_models_too compares it instead.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index"),
    pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes databases with no tables yet, all on SQLite or all on PostgreSQL; returns their URLs. (Not
    copies of the migrated template: the migrations run here.)"""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    cluster: PostgresServer = request.getfixturevalue("postgres_server")
    return cluster.create_database


@pytest.fixture
def migrated(new_database: Callable[[str], str]) -> Iterator[Engine]:
    engine = build_engine(new_database("migrated"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_the_history_is_one_line_from_one_base() -> None:
    """Two heads (two branches each adding a migration) or a merge revision joining them fails here:
    rebase the later migration onto the head instead (`down_revision`)."""
    scripts = ScriptDirectory.from_config(alembic_config(None))
    assert len(scripts.get_bases()) == 1, f"several bases: {scripts.get_bases()}"
    assert len(scripts.get_heads()) == 1, f"several heads: {scripts.get_heads()}"
    merges = [script.revision for script in scripts.walk_revisions() if script.is_merge_point]
    assert not merges, f"merge revisions: {merges}"


def test_the_migrated_schema_is_the_models(migrated: Engine) -> None:
    with migrated.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, load_all_models())
    assert differences == []


def test_the_migrated_indexes_and_checks_are_the_models_too(
    migrated: Engine, new_database: Callable[[str], str]
) -> None:
    """What compare_metadata does not compare: CHECK constraints, and on SQLite expression indexes
    (`lower(username)`). Every index and check must read as in a database made from the models by
    `create_all`."""
    from_models = build_engine(new_database("models"))
    try:
        load_all_models().create_all(from_models)
        with migrated.connect() as connection, from_models.connect() as expected:
            assert _indexes_and_checks(connection) == _indexes_and_checks(expected)
    finally:
        from_models.dispose()


def test_the_database_itself_refuses_a_username_in_another_case(migrated: Engine) -> None:
    """Two nodes creating `admin` and `Admin` at once both pass the service's check: the index stops one."""
    insert = text(
        "INSERT INTO users (username, source, admin, directory_admin, disabled, created_at, updated_at) "
        "VALUES (:name, 'local', false, false, false, :at, :at)"
    )
    with migrated.begin() as connection:
        connection.execute(insert, {"name": "admin", "at": "2026-01-01 00:00:00+00:00"})
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(insert, {"name": "Admin", "at": "2026-01-01 00:00:00+00:00"})


def test_downgrading_to_the_base_drops_every_table(migrated: Engine) -> None:
    with migrated.connect() as connection:
        command.downgrade(alembic_config(connection), "base")
        connection.commit()
        assert set(inspect(connection).get_table_names()) == MIGRATION_TABLES
    upgrade(migrated)  # and back: the baseline applies again over its own downgrade


def test_autogenerate_sees_every_model_and_finds_nothing_to_do(tmp_path: Path) -> None:
    """scripts/new-migration.py's path: the migrations' env.py hands autogenerate every model (a model
    it missed would come out as a `drop_table`); on a migrated database there is no change to write."""
    engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    try:
        upgrade(engine)
        with engine.connect() as connection:
            command.check(alembic_config(connection))  # raises AutogenerateDiffsDetected on a change
    finally:
        engine.dispose()


def test_every_table_is_declared_in_a_models_module() -> None:
    """db.all_models finds the tables by importing each `models.py`: a table declared anywhere else
    would be missed by autogenerate, the schema tests and the copy of backups and moves."""
    for module in pkgutil.walk_packages(dockyard.__path__, "dockyard."):
        if not module.name.startswith("dockyard.db.migrations"):  # alembic's env runs on import
            importlib.import_module(module.name)
    modules = set(model_modules())
    declared = {
        mapper.local_table.name  # type: ignore[attr-defined]
        for mapper in Base.registry.mappers
        if mapper.class_.__module__ in modules
    }
    assert set(Base.metadata.tables) == declared


# --- helpers ------------------------------------------------------------------------------------
def _indexes_and_checks(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    tables = sorted(set(inspector.get_table_names()) - MIGRATION_TABLES)
    checks = {
        (table, check["name"], check["sqltext"])
        for table in tables
        for check in inspector.get_check_constraints(table)
    }
    if connection.dialect.name == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    indexes = {name: definition for name, definition in connection.execute(text(query)).all()}
    for name in MIGRATION_TABLES:
        indexes.pop(f"{name}_pkc", None)
    return {"checks": checks, "indexes": indexes}
