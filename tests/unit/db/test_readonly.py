"""The runtime read-only switch (db.readonly) on SQLite and PostgreSQL: a write that commits after the
flag is written is rolled back with ReadOnly, one that commits before it is kept, and
`wait_for_writers` returns only once every write transaction open when the flag went on has ended, so
nothing commits after it that a copy taken then would miss."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from dockyard.config.settings import Settings
from dockyard.db.readonly import ReadOnlyFlag, deployment_identity, flag_path, wait_for_writers
from dockyard.db.session import Database, unless_full
from dockyard.errors import ReadOnly
from dockyard.storage.models import Blob


def blob_count(database: Database) -> int:
    with database.read() as connection:
        return int(connection.scalar(select(func.count()).select_from(Blob)) or 0)


def add_blob(connection: object, name: str) -> None:
    connection.execute(  # type: ignore[attr-defined]
        text("INSERT INTO blobs (digest, size, created_at) VALUES (:digest, 1, CURRENT_TIMESTAMP)"),
        {"digest": f"sha256:{name:0>64}"},
    )


def switched(database: Database, tmp_path: Path, deployment: str = "this") -> tuple[Database, ReadOnlyFlag]:
    flag = ReadOnlyFlag(tmp_path / "run" / "read-only", deployment)
    return Database(database.engine, read_only=flag), flag


def test_writes_are_refused_while_the_flag_names_this_deployment(database: Database, tmp_path: Path) -> None:
    db, flag = switched(database, tmp_path)
    with db.write() as connection:
        add_blob(connection, "1")
    assert not db.is_read_only()

    flag.turn_on("moving to PostgreSQL")
    assert db.is_read_only()
    with pytest.raises(ReadOnly), db.write() as connection:
        add_blob(connection, "2")
    assert blob_count(db) == 1  # rolled back
    with unless_full("a login's time"), db.write() as connection:  # bookkeeping is skipped quietly
        add_blob(connection, "3")
    assert blob_count(db) == 1

    other = ReadOnlyFlag(flag.path, "another deployment")  # the new config, on the same datadir
    assert not other.is_on() and not other.turn_off()
    with Database(db.engine, read_only=other).write() as connection:
        add_blob(connection, "4")

    state = flag.state()
    assert state is not None and state.reason == "moving to PostgreSQL" and state.deployment == "this"
    assert flag.turn_off()
    with db.write() as connection:
        add_blob(connection, "5")
    assert blob_count(db) == 3


def test_the_barrier_waits_for_a_write_in_flight_which_then_finds_the_flag(
    database: Database, tmp_path: Path
) -> None:
    db, flag = switched(database, tmp_path)
    inside, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def writer() -> None:
        try:
            with db.write() as connection:
                add_blob(connection, "a")
                inside.set()
                release.wait(30)
            outcome.append("committed")
        except ReadOnly:
            outcome.append("refused")

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(30)
    flag.turn_on("test")
    barrier_done = threading.Event()
    barrier = threading.Thread(target=lambda: (wait_for_writers(db.engine, timeout=30), barrier_done.set()))
    barrier.start()
    time.sleep(0.5)
    assert not barrier_done.is_set()  # the write is still open
    release.set()
    thread.join(30)
    barrier.join(30)
    assert barrier_done.is_set()
    assert outcome == ["refused"]  # it reached its commit after the flag: nothing was committed
    assert blob_count(db) == 0


def test_the_barrier_gives_up_after_its_timeout(database: Database, tmp_path: Path) -> None:
    release = threading.Event()
    inside = threading.Event()

    def writer() -> None:
        with database.write() as connection:
            add_blob(connection, "b")
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(TimeoutError):
            wait_for_writers(database.engine, timeout=0.5)
    finally:
        release.set()
        thread.join(30)
    wait_for_writers(database.engine, timeout=5)  # none left


def test_the_deployment_names_database_and_storage_without_secrets(tmp_path: Path) -> None:
    base = Settings(datadir=tmp_path / "data")
    assert deployment_identity(base) == (
        f"sqlite:{(tmp_path / 'data' / 'dockyard.db').resolve()} filesystem:{(tmp_path / 'data' / 'storage')}"
    )
    moved = Settings.model_validate(
        {
            "datadir": str(tmp_path / "data"),
            "database": {"url": "postgresql://dockyard:hunter2@db:5432/registry"},
            "storage": {
                "s3": {"bucket": "blobs", "regionendpoint": "http://s3:8333", "secretkey": "hunter3"}
            },
        }
    )
    identity = deployment_identity(moved)
    assert identity == "postgresql+psycopg://dockyard@db:5432/registry s3:http://s3:8333/blobs/"
    assert "hunter" not in identity
    assert flag_path(base.datadir) == tmp_path / "data" / "run" / "read-only"
