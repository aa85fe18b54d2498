"""An answered write on SQLite is on the disk (db.session): SQLite runs with synchronous=NORMAL, so each
write transaction flushes the WAL once it committed, after letting go of the write locks (transactions
that commit meanwhile share the flush). A power cut cannot be made here; what is checked is that the
WAL is fdatasynced after every commit and before `write()` returns, outside the locks, and never for a
transaction that rolled back or only read, or that is marked as one that need not be (`durable=False`:
an upload session's bookkeeping; what a power cut then leaves is tests/unit/storage/
test_upload_power_cut.py's)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.content.digest import digest_of
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.db import wal_flush
from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.jobs.queue import JobQueue
from dockyard.storage.driver.filesystem import FilesystemDriver
from tests.support.registry import registry_parts
from tests.support.sqlite_template import copy_migrated_sqlite


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "dockyard.db"
    copy_migrated_sqlite(path)
    database = Database(build_engine(f"sqlite:///{path}"))
    yield database
    database.dispose()


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch, database: Database) -> list[tuple[str, bool]]:
    """Each fdatasync of this process: the file's path, and whether the write lock was held then."""
    seen: list[tuple[str, bool]] = []
    real = os.fdatasync

    def recording(descriptor: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        seen.append((path, database._write_lock.locked()))  # type: ignore[attr-defined]
        real(descriptor)

    monkeypatch.setattr(os, "fdatasync", recording)
    return seen


def _add_job(database: Database) -> None:
    with database.write() as connection:
        JobQueue(database).enqueue("echo", connection=connection)


def test_a_commit_flushes_the_wal_outside_the_write_lock(
    database: Database, flushes: list[tuple[str, bool]]
) -> None:
    _add_job(database)
    wal = f"{database.engine.url.database}-wal"
    assert flushes == [(os.path.realpath(wal), False)]
    _add_job(database)
    assert len(flushes) == 2


def test_a_rollback_or_a_read_flushes_nothing(database: Database, flushes: list[tuple[str, bool]]) -> None:
    with pytest.raises(RuntimeError), database.write() as connection:
        JobQueue(database).enqueue("echo", connection=connection)
        raise RuntimeError("the caller gave up")
    with database.read() as connection:
        connection.exec_driver_sql("SELECT 1")
    assert flushes == []


def test_a_write_marked_not_durable_is_flushed_by_the_next_durable_one(
    database: Database, flushes: list[tuple[str, bool]]
) -> None:
    with database.write(durable=False) as connection:
        JobQueue(database).enqueue("echo", connection=connection)
    assert flushes == []
    _add_job(database)
    assert len(flushes) == 1  # the WAL is written in order: this flush covers both commits


def _wal_flushes(flushes: list[tuple[str, bool]]) -> int:
    return sum(1 for path, _ in flushes if path.endswith("-wal"))


def test_an_upload_sessions_bookkeeping_is_not_flushed_its_commit_is(
    database: Database, flushes: list[tuple[str, bool]], tmp_path: Path
) -> None:
    """What no client is told is kept goes unflushed: the row a POST opens, the size each PATCH records
    (a power cut only makes the client resume from an earlier offset, or start again). The blob's
    commit, a mount and a cancel flush."""
    parts = registry_parts(database, FilesystemDriver(tmp_path / "storage"), InProcessChangeFeed())
    uploads = parts.blob_uploads
    data = b"a layer in two chunks"
    state = uploads.start("team/app")
    for chunk in (data[:8], data[8:]):
        session = uploads.begin_append(state)
        session.write(chunk)
        state = session.finish()
    assert _wal_flushes(flushes) == 0
    uploads.commit(state, digest_of(data))
    assert _wal_flushes(flushes) == 1
    assert parts.registry.mount_blob("team/other", digest_of(data), "team/app") == len(data)
    assert _wal_flushes(flushes) == 2
    uploads.cancel("team/app", uploads.start("team/app").id)
    assert _wal_flushes(flushes) == 3


def test_threads_that_commit_while_a_flush_runs_share_the_next_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Eight threads ask at once while a slow flush runs: they are answered by far fewer flushes than
    eight (two: the one running, and one for all seven), and none returns before a flush that started
    after it asked."""
    started: list[float] = []

    def slow_flush(path: str) -> None:
        started.append(time.monotonic())
        time.sleep(0.5)

    monkeypatch.setattr(wal_flush, "flush_file", slow_flush)
    flusher = wal_flush.WalFlusher(str(tmp_path / "dockyard.db-wal"))
    answered: list[tuple[float, float]] = []

    def commit_and_flush() -> None:
        asked = time.monotonic()
        flusher.flush()
        answered.append((asked, time.monotonic()))

    first = threading.Thread(target=commit_and_flush)
    first.start()
    while not started:  # until the first flush runs
        time.sleep(0.001)
    others = [threading.Thread(target=commit_and_flush) for _ in range(7)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(timeout=10)
    assert len(answered) == 8
    assert len(started) == 2
    for asked, done in answered:
        assert any(asked <= start and start + 0.5 <= done for start in started)
