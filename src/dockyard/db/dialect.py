"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(connection: Connection, table: Any, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: concurrent writers of the same row both succeed."""
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def upsert(
    connection: Connection,
    table: Any,
    values: dict[str, Any],
    key: list[str],
    update: list[str],
) -> None:
    """INSERT, or UPDATE the `update` columns of the row that has the same `key` columns."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=key, set_={name: statement.excluded[name] for name in update}
    )
    connection.execute(statement)


def bytewise(column: Any, connection: Connection) -> Any:
    """Order and compare strings byte by byte (lexical, as the OCI spec asks), whatever the DB locale."""
    return column.collate("C") if connection.dialect.name == "postgresql" else column
