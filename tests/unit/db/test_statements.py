"""db.statements: the push path's statements on the driver connection, inside the caller's SQLAlchemy
transaction, on SQLite and PostgreSQL: same rows, same defaults and types, same atomicity, same errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import default as sa_default

from dockyard.content.digest import digest_of
from dockyard.db.dialect import insert_for
from dockyard.db.session import Database
from dockyard.db.statements import DriverStatement
from dockyard.storage.models import Blob, Upload
from tests.unit.gc.fixtures import Env

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases

_ADD = DriverStatement(
    insert(Upload), column_keys=("id", "repository", "project", "owner", "size", "created_at")
)
_READ = DriverStatement(
    select(Upload.id, Upload.size, Upload.created_at, Upload.updated_at).where(
        Upload.id == bindparam("upload_id")
    )
)
_BLOB = DriverStatement(
    lambda dialect: insert_for(dialect, Blob).on_conflict_do_nothing().returning(Blob.digest),
    column_keys=("digest", "size"),
)
T0 = datetime(2026, 12, 6, 7, 0, 0, 123456, tzinfo=UTC)


def _row(upload_id: str, size: int = 0) -> dict[str, Any]:
    return {
        "id": upload_id,
        "repository": "team/app",
        "project": "team",
        "owner": None,
        "size": size,
        "created_at": T0,
    }


def test_rows_types_and_python_defaults_are_sqlalchemys(database: Database) -> None:
    with database.write() as connection:
        assert _ADD.execute(connection, _row("u1", 5)).rowcount == 1
        row = _READ.execute(connection, {"upload_id": "u1"}).one()
    assert (row.id, row.size, row.created_at) == ("u1", 5, T0)  # a UTC datetime, back as it went in
    assert row.updated_at is not None and row.updated_at.tzinfo is not None  # its default=utcnow ran
    with database.read() as connection:
        expected = connection.execute(
            select(Upload.id, Upload.size, Upload.created_at).where(Upload.id == "u1")
        ).one()
    assert tuple(expected) == (row.id, row.size, row.created_at)
    with database.write() as connection:
        assert _READ.execute(connection, {"upload_id": "none"}).first() is None
        first = _BLOB.execute(connection, {"digest": "sha256:" + "a" * 64, "size": 1}).first()
        again = _BLOB.execute(connection, {"digest": "sha256:" + "a" * 64, "size": 1}).first()
    assert (first.digest, again) == ("sha256:" + "a" * 64, None)  # RETURNING; nothing on a conflict


def test_a_rolled_back_transaction_takes_the_driver_statements_with_it(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write() as connection:
        _ADD.execute(connection, _row("u2"))
        connection.execute(insert(Upload).values(**_row("u3")))  # and the Connection's own, alike
        raise RuntimeError("the commit failed after its statements")
    with database.read() as connection:
        assert connection.execute(select(Upload.id)).all() == []


def test_errors_are_sqlalchemys_and_the_connection_stays_usable(database: Database) -> None:
    with database.write() as connection:
        _ADD.execute(connection, _row("u4"))
    with pytest.raises(sa_exc.IntegrityError), database.write() as connection:
        _ADD.execute(connection, _row("u4"))
    with database.write() as connection:  # the pool's connections all still work
        _ADD.execute(connection, _row("u5"))
    with database.read() as connection:
        assert sorted(connection.scalars(select(Upload.id))) == ["u4", "u5"]


def test_the_engines_cursor_events_see_them(database: Database) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(database.engine, "after_cursor_execute", record)
    try:
        with database.write() as connection:
            _ADD.execute(connection, _row("u6"))
    finally:
        event.remove(database.engine, "after_cursor_execute", record)
    assert "INSERT" in seen


def _push(env: Any, repository: str, data: bytes) -> None:
    """POST, then PUT with the body and ?digest=, as /v2 runs them (api.oci.uploads)."""
    uploads = env.blob_uploads
    state = uploads.start(repository)
    session = uploads.begin_append(uploads.get(repository, state.id))
    session.write(data)
    assert uploads.commit(session.finish(record=False), digest_of(data)) == len(data)


def test_a_push_runs_no_statement_through_sqlalchemys_execution_path(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its repository exists, a push's write transactions (the upload's row; the blob, its state,
    the repository, the link, the quota count and usage, the upload's row gone) go to the driver: no
    SQLAlchemy execution context is made for their statements."""
    env = Env.on(database, tmp_path / "storage")
    _push(env, "team/app", b"first")
    made: list[str] = []
    original = sa_default.DefaultExecutionContext._init_compiled.__func__  # type: ignore[attr-defined]

    def counted(
        cls: Any, dialect: Any, connection: Any, dbapi_connection: Any, *args: Any, **kwargs: Any
    ) -> Any:
        made.append(str(args[1]).split()[0])
        return original(cls, dialect, connection, dbapi_connection, *args, **kwargs)

    monkeypatch.setattr(sa_default.DefaultExecutionContext, "_init_compiled", classmethod(counted))
    _push(env, "team/app", b"second")
    assert made == []
    with database.read() as connection:
        assert connection.scalar(select(func.count()).select_from(Upload)) == 0
        assert sorted(connection.scalars(select(Blob.size))) == [5, 6]
