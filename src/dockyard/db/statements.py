"""Statements of the push path's write transactions, compiled once and run on the driver connection.

A push writes in two transactions (the upload's row; the commit: the blob, its repository link, the
quota count, the upload's row gone), and a manifest PUT or a mount in one more. Through a SQLAlchemy
Connection each statement cost about 37 µs of CPU here (its cache key, the execution context, events,
the result) against about 2 µs for the same prebuilt SQL on the driver. So the statements these
transactions run on every push are `DriverStatement`s: compiled once per dialect (one Core source for
both databases, as `db.lookups` does for reads), run with `execute(connection, values)` on the driver
connection *of the caller's SQLAlchemy Connection*, inside its transaction: the same BEGIN (IMMEDIATE
on SQLite), the same write lock, read-only check and COMMIT or ROLLBACK as `Database.write`, and
anything else in that transaction (an audit row, a webhook's outbox) still goes through the
Connection, on the same driver connection.

What SQLAlchemy would have done around the SQL is done here too, once: bind processors (UTC
datetimes), Python-side column defaults of an INSERT (`created_at`), result processors, rows with
named fields. DBAPI errors come out as SQLAlchemy's DBAPIError subclasses, as from a Connection, so
the one mapping of database errors applies unchanged. Not supported (refused when compiled): IN
lists expanded at execution, SQL-side defaults the compiler would prefetch. `execute_many` runs one
statement with several sets of values (the driver's executemany: one round trip on PostgreSQL's
pipeline), without rows back. The engine's cursor events fire as for any statement (the database
metrics time them).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ClauseElement, Connection, Dialect
from sqlalchemy import exc as sa_exc


class DriverResult:
    """The rows of a statement (all fetched) and its rowcount."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise sa_exc.NoResultFound("no row") if not self._rows else sa_exc.MultipleResultsFound("rows")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def all(self) -> list[Any]:
        return list(self._rows)


class _Compiled:
    """One statement for one dialect: its SQL and what to do to its parameters and rows."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None) -> None:
        compiled: Any = statement.compile(dialect=dialect, column_keys=column_keys)  # a SQLCompiler
        if getattr(compiled, "literal_execute_params", None) or getattr(
            compiled, "post_compile_params", None
        ):
            raise ValueError(
                f"a statement with parameters expanded at execution cannot run on the driver: {compiled}"
            )
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.names: tuple[str, ...] = (
            tuple(compiled.positiontup or ()) if self.positional else tuple(compiled.binds)
        )
        processors = compiled._bind_processors
        self.processors = tuple(processors.get(name) for name in self.names)
        # A bind the statement holds a value for (a constant, a LIMIT): used when values has none.
        self.fixed: dict[str, Any] = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.callable is None
        }
        # Columns an INSERT or UPDATE does not name but have a Python default (`default=utcnow`).
        self.defaults: dict[str, Callable[[], Any]] = {}
        prefetched = [(column, column.default) for column in compiled.insert_prefetch]
        prefetched += [(column, column.onupdate) for column in compiled.update_prefetch]
        for column, default in prefetched:
            if default is None or not (default.is_scalar or default.is_callable):
                raise ValueError(f"column {column} has a default the driver cannot compute: {compiled}")
            self.defaults[column.key] = _default_of(default)
        entries = list(compiled._result_columns or ())
        self.row_type: Any = None
        self.result_processors: tuple[Any, ...] = ()
        if entries:
            self.row_type = namedtuple("Row", [entry.keyname for entry in entries], rename=True)  # type: ignore[misc]
            self.result_processors = tuple(
                entry.type._cached_result_processor(dialect, None) for entry in entries
            )
        self.postgresql = dialect.name == "postgresql"

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        processed = []
        for name, processor in zip(self.names, self.processors, strict=True):
            if name in values:
                value = values[name]
            elif name in self.defaults:
                value = self.defaults[name]()
            elif name in self.fixed:
                value = self.fixed[name]
            else:
                raise KeyError(f"no value for the statement's parameter {name!r}")
            processed.append(value if processor is None or value is None else processor(value))
        if self.positional:
            return tuple(processed)
        return dict(zip(self.names, processed, strict=True))

    def row(self, raw: Sequence[Any]) -> Any:
        values = [
            value if processor is None or value is None else processor(value)
            for value, processor in zip(raw, self.result_processors, strict=True)
        ]
        return self.row_type(*values)


def _default_of(default: Any) -> Callable[[], Any]:
    """A column's Python default as a function of nothing (SQLAlchemy wraps a callable `default=` to
    take the execution context, which a function of no arguments ignores)."""
    if default.is_scalar:
        value = default.arg
        return lambda: value
    make = default.arg
    return lambda: make(None)


class DriverStatement:
    """A Core statement (or, for one whose SQL differs by database, a function of the dialect's name
    that builds it) run on the driver connection of a SQLAlchemy Connection, in its transaction.
    `column_keys`: the columns an INSERT or UPDATE without `.values()` gets, as the keys of the
    values a Connection would have been handed."""

    def __init__(
        self,
        statement: ClauseElement | Callable[[str], ClauseElement],
        column_keys: Sequence[str] | None = None,
    ) -> None:
        self._statement = statement
        self._column_keys = tuple(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            with self._lock:
                found = self._compiled.get(dialect.name)
                if found is None:
                    statement = self._statement
                    if not isinstance(statement, ClauseElement):
                        statement = statement(dialect.name)
                    found = _Compiled(statement, dialect, self._column_keys)
                    self._compiled[dialect.name] = found
        return found

    def execute(self, connection: Connection, values: Mapping[str, Any]) -> DriverResult:
        """Run with one set of values in `connection`'s transaction (begun by `Database.write`)."""
        compiled = self.compiled(connection.dialect)
        return self._run(connection, compiled, compiled.parameters(values), many=False)

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run once per set of values in `rows`, in one driver call (no rows back); the rowcount."""
        if not rows:
            return 0
        compiled = self.compiled(connection.dialect)
        parameters = [compiled.parameters(values) for values in rows]
        return self._run(connection, compiled, parameters, many=True).rowcount

    @staticmethod
    def _run(connection: Connection, compiled: _Compiled, parameters: Any, many: bool) -> DriverResult:
        dialect = connection.dialect
        # The Connection's transaction has begun (Database.write/read enter it before yielding), so
        # the driver connection is checked out and, on SQLite, past its BEGIN.
        pooled: Any = connection.connection
        driver: Any = pooled.driver_connection
        # The engine's cursor events, as for any statement (the database metrics time them; tests
        # count them), told apart as SQLAlchemy's own execution path does: by the flags that listening
        # sets, not by asking the joined listener collections (~1 µs each: a walk of nested objects).
        events = connection._has_events or connection.engine._has_events
        dispatch: Any = connection.dispatch
        try:
            cursor = driver.cursor()
            if events:
                dispatch.before_cursor_execute(connection, cursor, compiled.sql, parameters, None, many)
            if many:
                cursor.executemany(compiled.sql, parameters)
            elif compiled.postgresql:
                cursor.execute(compiled.sql, parameters, prepare=True)
            else:
                cursor.execute(compiled.sql, parameters)
            if events:
                dispatch.after_cursor_execute(connection, cursor, compiled.sql, parameters, None, many)
            raw_rows = cursor.fetchall() if not many and cursor.description is not None else []
            rowcount = cursor.rowcount
            cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            invalidated = dialect.is_disconnect(exc, pooled, None)
            wrapped = sa_exc.DBAPIError.instance(
                compiled.sql,
                parameters,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=invalidated,
                dialect=dialect,
            )
            if invalidated:
                connection.invalidate(exc)
            raise wrapped from exc
        rows = [compiled.row(raw) for raw in raw_rows] if compiled.row_type is not None else []
        return DriverResult(rows, rowcount)
