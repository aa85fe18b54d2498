"""Every row of every table the models declare, for tests that compare two databases (a move, a
restore): typed through the models, so SQLite and PostgreSQL rows compare equal when they hold the
same values, and JSON columns also say whether they are SQL NULL (which a typed read cannot tell from
a JSON null)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Connection, Table, select
from sqlalchemy.types import TypeDecorator

from dockyard.maintenance.tables import model_tables


def is_json(column: Any) -> bool:
    kind = column.type
    return isinstance(kind.impl_instance if isinstance(kind, TypeDecorator) else kind, JSON)


Rows = dict[str, list[tuple[Any, ...]]]


def dump_tables(connection: Connection, tables: list[Table] | None = None) -> Rows:
    out: Rows = {}
    for table in tables if tables is not None else model_tables():
        json_nulls = [column.is_(None) for column in table.columns if is_json(column)]
        query = select(*table.columns, *json_nulls).order_by(*table.primary_key.columns)
        out[table.name] = [tuple(row) for row in connection.execute(query)]
    return out
