"""A database that cannot grow (its disk is full): writes raise StorageFull, which both APIs answer with
507, reads go on, and writes work again once space is freed. On SQLite (the file on a small tmpfs) and
PostgreSQL (a tablespace on a small tmpfs)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from dockyard.api.management.errors import status_for
from dockyard.api.oci.errors import render_error
from dockyard.db.engine import build_engine
from dockyard.db.session import Database, database_full, database_unavailable, unless_full
from dockyard.errors import StorageFull
from tests.support.tmpfs import database_on_small_filesystem, fill

ROW = 200_000  # bytes a write adds: more than a full disk's last free block


@pytest.fixture(params=["sqlite", "postgresql"])
def small_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    """A database whose data lives on a 16 MiB tmpfs, with a table `t`; and the tmpfs's mount point."""
    server = None
    if request.param == "postgresql":
        server = request.getfixturevalue("own_postgres_server").database_url("postgres")
    with database_on_small_filesystem(server, tmp_path, "16m") as (url, mount):
        db = Database(build_engine(url))
        try:
            with db.write() as connection:
                connection.execute(
                    text("CREATE TABLE t (x BLOB)" if server is None else "CREATE TABLE t (x BYTEA)")
                )
                if server is not None:  # stored as is, not compressed: a row takes ROW bytes of the disk
                    connection.execute(text("ALTER TABLE t ALTER COLUMN x SET STORAGE EXTERNAL"))
            yield db, mount
        finally:
            db.dispose()


def insert_row(db: Database) -> None:
    with db.write() as connection:
        connection.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": bytes(range(256)) * (ROW // 256)})


def test_a_full_database_refuses_writes_with_storage_full_and_serves_reads(
    small_database: tuple[Database, Path],
) -> None:
    db, mount = small_database
    insert_row(db)
    filler = mount / "filler"
    fill(filler)

    with pytest.raises(StorageFull) as raised:
        for _ in range(5):  # the first may still fit in pages the database had free
            insert_row(db)
    error = raised.value
    assert database_full(error.__cause__ or error)
    assert not database_unavailable(error)  # no Retry-After: retrying will not help until space is freed
    response = render_error(error)
    assert response.status_code == 507
    body = json.loads(bytes(response.body))
    assert body["errors"][0]["code"] == "DENIED"
    assert "storage is full" in body["errors"][0]["message"]
    assert status_for(error) == 507
    with unless_full("a side note"), db.write() as connection:  # bookkeeping is skipped, not raised
        connection.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": b"z" * ROW})
    with db.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() >= 1

    filler.unlink()
    insert_row(db)


def test_driver_errors_for_a_full_disk_are_recognised() -> None:
    sqlite_full = sa_exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("database or disk is full"))
    assert database_full(sqlite_full)
    postgres_full = sa_exc.OperationalError("INSERT", {}, psycopg.errors.DiskFull("could not extend file"))
    assert database_full(postgres_full)
    assert not database_unavailable(postgres_full)  # an OperationalError, yet no retry will help
    assert not database_full(sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("locked")))
