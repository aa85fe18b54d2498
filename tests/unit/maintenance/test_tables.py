"""The generic table copy (maintenance.tables) between SQLite and PostgreSQL, both ways, on every table
the models declare: each gets rows with every kind of value its columns hold (the widest integers,
non-ASCII text, bytes, timestamps with microseconds, JSON with SQL NULL and JSON null apart), and the
copy must hold the same rows. A table added later is filled and checked by the same code, so a table
the copy missed fails here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.maintenance.interfaces import MaintenanceError
from dockyard.maintenance.tables import (
    MIGRATION_TABLES,
    check_tables,
    copy_rows,
    model_tables,
    reset_sequences,
    row_counts,
    tables_with_rows,
)
from tests.support.postgres import PostgresServer
from tests.support.tables import dump_tables

ROWS_PER_TABLE = 3
FIRST_ID = 40  # explicit ids well past 1: the sequences must be moved past them


def _base_type(column: Any) -> Any:
    kind = column.type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _value(table: Table, column: Any, n: int) -> Any:
    """Row n's value for a column that is not a foreign key: the awkward cases of its type."""
    kind = _base_type(column)
    if column.primary_key and isinstance(kind, Integer):
        return FIRST_ID + n
    if isinstance(kind, Boolean):
        return n % 2 == 1
    if isinstance(kind, BigInteger):
        return 2**53 + n  # past what a double holds exactly, and past 32 bits
    if isinstance(kind, Integer):
        return 70 + n
    if isinstance(kind, Float):
        return 9.8 + n / 3  # not exact in decimal: a copy through text must keep every bit
    if isinstance(kind, JSON):
        return {"n": n, "text": "é ü ✓", "list": [1, None, True, 2.5], "nested": {"": ""}}
    if isinstance(kind, LargeBinary):
        return bytes(range(256)) * n + b"\x00"
    if isinstance(kind, DateTime):
        return datetime(2024, 2, 29, 23, 59, 58, 123_456 + n, tzinfo=UTC)
    if isinstance(kind, String | Text):
        value = f"{table.name}.{column.name}#{n} é✓ \t\\N\n\\"  # what COPY's text format escapes
        length = getattr(kind, "length", None)
        return value[-length:] if length else value + " long" * 500
    raise AssertionError(f"no test value for {table.name}.{column.name} ({kind!r}): add one here")


def _row(table: Table, n: int, parents: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Row 1 sets every column; row 2 leaves every nullable one NULL; row 3 stores JSON null."""
    row: dict[str, Any] = {}
    for column in table.columns:
        foreign = next(iter(column.foreign_keys), None)
        if foreign is not None:
            value = parents[foreign.column.table.name][n - 1][foreign.column.name]
        else:
            value = _value(table, column, n)
        if column.nullable and not column.primary_key:
            if n == 2:
                value = None
            elif n == 3 and isinstance(_base_type(column), JSON):
                value = JSON.NULL
        row[column.name] = value
    if table.name == "project_members":  # CHECK: a user or a group, not both
        if n == 2:
            row["group_id"] = parents["groups"][1]["id"]
        else:
            row["group_id"] = None
    return row


def fill_every_table(connection: Connection, tables: list[Table]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        rows[table.name] = [_row(table, n, rows) for n in range(1, ROWS_PER_TABLE + 1)]
        for row in rows[table.name]:
            connection.execute(insert(table).values(**row))
    return rows


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = build_engine(f"sqlite:///{tmp_path / 'source.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    engine = build_engine(postgres_server.create_database("tables", migrated=True))
    yield engine
    engine.dispose()


def copy_all(source: Engine, target: Engine, tables: list[Table]) -> dict[str, int]:
    with source.connect() as reading, reading.begin(), target.begin() as writing:
        copied = copy_rows(reading, writing, tables, batch=2)  # several batches per table
        reset_sequences(writing)
    return copied


def test_every_table_of_a_migrated_database_is_a_model_table_the_copy_knows(sqlite_engine: Engine) -> None:
    tables = {table.name for table in model_tables()}
    with sqlite_engine.connect() as connection:
        migrated = set(inspect(connection).get_table_names()) - MIGRATION_TABLES
    assert migrated == tables


def test_sqlite_to_postgresql_and_back_keeps_every_row_of_every_table(
    sqlite_engine: Engine, postgres_engine: Engine, tmp_path: Path
) -> None:
    tables = model_tables()
    with sqlite_engine.begin() as connection:
        fill_every_table(connection, tables)
        expected = dump_tables(connection, tables)
    assert all(len(rows) == ROWS_PER_TABLE for rows in expected.values())

    copied = copy_all(sqlite_engine, postgres_engine, tables)

    assert copied == {table.name: ROWS_PER_TABLE for table in tables}
    with postgres_engine.connect() as connection:
        assert dump_tables(connection, tables) == expected
        # Sequences moved past the copied ids: a new row gets a fresh id, not a duplicate.
        next_id = connection.execute(text("SELECT nextval(pg_get_serial_sequence('users', 'id'))")).scalar()
        assert next_id == FIRST_ID + ROWS_PER_TABLE + 1

    back = build_engine(f"sqlite:///{tmp_path / 'back.db'}")
    upgrade(back)
    try:
        copy_all(postgres_engine, back, tables)
        with back.connect() as connection:
            assert dump_tables(connection, tables) == expected
    finally:
        back.dispose()


def test_timestamps_read_in_another_time_zone_are_copied_as_the_same_instant(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    tables = model_tables()
    with postgres_engine.begin() as connection:
        fill_every_table(connection, tables)
    target = build_engine(f"sqlite:///{tmp_path / 'target.db'}")
    upgrade(target)
    try:
        with postgres_engine.connect() as reading, reading.begin(), target.begin() as writing:
            reading.exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")  # +05:30
            copy_rows(reading, writing, tables)
        with target.connect() as connection:
            created = connection.scalar(select(tables_by_name(tables)["users"].c.created_at).limit(1))
        assert created == datetime(2024, 2, 29, 23, 59, 58, 123_457, tzinfo=UTC)
    finally:
        target.dispose()


def tables_by_name(tables: list[Table]) -> dict[str, Table]:
    return {table.name: table for table in tables}


def test_a_table_without_a_model_is_refused_not_skipped(sqlite_engine: Engine) -> None:
    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE replication_rules (id INTEGER PRIMARY KEY)")
    with sqlite_engine.connect() as connection, pytest.raises(MaintenanceError, match="replication_rules"):
        check_tables(connection, model_tables(), "source")


def test_counts_and_emptiness(sqlite_engine: Engine) -> None:
    tables = model_tables()
    with sqlite_engine.connect() as connection:
        assert tables_with_rows(connection, tables) == []
        check_tables(connection, tables, "target")
    with sqlite_engine.begin() as connection:
        fill_every_table(connection, tables)
    with sqlite_engine.connect() as connection:
        assert row_counts(connection, tables) == {table.name: ROWS_PER_TABLE for table in tables}
        assert sorted(tables_with_rows(connection, tables)) == sorted(table.name for table in tables)
