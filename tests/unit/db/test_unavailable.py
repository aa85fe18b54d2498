"""Which database errors mean "unavailable, retry" (a 503) and which are bugs (a 500)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc

from dockyard.api.oci.errors import render_error
from dockyard.db.engine import build_engine
from dockyard.db.session import Database, database_unavailable
from tests.support.server import free_port


def failure(db: Database, statement: str = "SELECT 1") -> Exception:
    with pytest.raises(Exception) as raised, db.read() as connection:
        connection.execute(text(statement))
    return raised.value


def test_an_unreachable_postgresql_is_unavailable_and_answers_503_with_retry_after() -> None:
    db = Database(build_engine(f"postgresql://dockyard@127.0.0.1:{free_port()}/nothing"))
    try:
        error = failure(db)
    finally:
        db.dispose()
    assert database_unavailable(error)
    response = render_error(error)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = json.loads(bytes(response.body))
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert "127.0.0.1" not in str(body) and "psycopg" not in str(body)


def test_a_pool_timeout_and_a_busy_sqlite_are_unavailable() -> None:
    assert database_unavailable(sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"))
    locked = sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    assert database_unavailable(locked)
    wrapped = RuntimeError("while recording")
    wrapped.__cause__ = locked
    assert database_unavailable(wrapped)


def test_bugs_are_not_unavailable(tmp_path: Path) -> None:
    db = Database(build_engine(f"sqlite:///{tmp_path / 'bugs.db'}"))
    try:
        error = failure(db, "SELECT * FROM no_such_table")
    finally:
        db.dispose()
    assert not database_unavailable(error)
    assert render_error(error).status_code == 500
    assert not database_unavailable(ValueError("bad"))


@pytest.mark.db_independent  # reason: SQLite's own write lock, whatever the pass's database
def test_a_write_that_cannot_begin_on_a_locked_sqlite_is_unavailable(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE runs on the driver (db.engine): still an SQLAlchemy error when another process
    holds the write lock past busy_timeout, answered 503 like any other busy database."""
    path = tmp_path / "locked.db"
    engine = build_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda connection, _record: connection.execute("PRAGMA busy_timeout=50"))
    db = Database(engine)
    # A first connection sets WAL mode (which waits for every other lock) and stays in the pool: the
    # write below then fails at its BEGIN IMMEDIATE, after 50 ms, not at connecting, after 30 s.
    with db.write() as connection:
        connection.execute(text("SELECT 1"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sa_exc.OperationalError) as raised, db.write():
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert database_unavailable(raised.value)
    assert render_error(raised.value).status_code == 503
    with db.write() as connection:  # the lock gone, the next write goes through
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    db.dispose()
