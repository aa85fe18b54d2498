"""PullRecorder: pulls are noted in memory and written in one batched UPDATE, to the minute, forward only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.registry.models import Manifest, Repository
from dockyard.registry.pulls import PullRecorder
from tests.support.postgres import migrated_scratch_database

T0 = datetime(2024, 5, 1, 12, 30, 17, 250_000, tzinfo=UTC)
DIGESTS = [f"sha256:{str(n) * 64}" for n in range(3)]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_scratch_database(tmp_path, "pulls.db")
    with database.write() as connection:
        for name in ("team/app", "team/other"):
            repository_id = connection.execute(
                insert(Repository).values(name=name, created_at=utcnow())
            ).inserted_primary_key[0]  # type: ignore[index]
            for digest in DIGESTS:
                connection.execute(
                    insert(Manifest).values(
                        repository_id=repository_id,
                        digest=digest,
                        media_type="application/vnd.oci.image.manifest.v1+json",
                        size=2,
                        content=b"{}",
                        created_at=utcnow(),
                    )
                )
    yield database
    database.dispose()


def pulled(db: Database) -> dict[tuple[str, str], datetime | None]:
    with db.read() as connection:
        rows = connection.execute(
            select(Repository.name, Manifest.digest, Manifest.last_pulled_at).join(
                Repository, Repository.id == Manifest.repository_id
            )
        )
        return {(row.name, row.digest): row.last_pulled_at for row in rows}


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, bool]]]:
    """The UPDATE statements sent to the DB meanwhile, with whether each was an executemany."""
    seen: list[tuple[str, bool]] = []

    def record(conn: Connection, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("UPDATE"):
            seen.append((sql, many))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_many_pulls_become_one_batched_update_to_the_minute(db: Database) -> None:
    recorder = PullRecorder(db, interval=3600, clock=Clock(T0))
    for _ in range(1000):
        recorder.note("team/app", DIGESTS[0])
    recorder.note("team/app", DIGESTS[1])
    recorder.note("team/other", DIGESTS[0])
    assert pulled(db)[("team/app", DIGESTS[0])] is None  # nothing written until the flush

    with statements(db) as seen:
        assert recorder.flush() == 3
    # One statement: an executemany on SQLite, the batch as arrays on PostgreSQL (one execution).
    assert len(seen) == 1 and seen[0][1] == (db.dialect != "postgresql"), seen

    minute = T0.replace(second=0, microsecond=0)
    times = pulled(db)
    assert times[("team/app", DIGESTS[0])] == minute
    assert times[("team/app", DIGESTS[1])] == minute
    assert times[("team/other", DIGESTS[0])] == minute
    assert times[("team/app", DIGESTS[2])] is None
    assert times[("team/other", DIGESTS[1])] is None
    recorder.close()


def test_the_same_minute_is_written_once_and_later_minutes_move_forward(db: Database) -> None:
    clock = Clock(T0)
    recorder = PullRecorder(db, interval=3600, clock=clock)
    recorder.note("team/app", DIGESTS[0])
    assert recorder.flush() == 1
    clock.now = T0 + timedelta(seconds=20)  # same minute: nothing to send
    recorder.note("team/app", DIGESTS[0])
    with statements(db) as seen:
        assert recorder.flush() == 0
    assert seen == []

    clock.now = T0 + timedelta(minutes=3)
    recorder.note("team/app", DIGESTS[0])
    assert recorder.flush() == 1
    assert pulled(db)[("team/app", DIGESTS[0])] == datetime(2024, 5, 1, 12, 33, tzinfo=UTC)
    recorder.close()


def test_a_time_is_never_moved_back(db: Database) -> None:
    """Another worker (or node) with a later pull already wrote; an older note must not win."""
    later = PullRecorder(db, interval=3600, clock=Clock(T0 + timedelta(hours=1)))
    later.note("team/app", DIGESTS[0])
    later.flush()
    earlier = PullRecorder(db, interval=3600, clock=Clock(T0))
    earlier.note("team/app", DIGESTS[0])
    earlier.flush()
    assert pulled(db)[("team/app", DIGESTS[0])] == datetime(2024, 5, 1, 13, 30, tzinfo=UTC)


def test_unknown_repositories_and_digests_are_harmless(db: Database) -> None:
    recorder = PullRecorder(db, interval=3600, clock=Clock(T0))
    recorder.note("no/such", DIGESTS[0])
    recorder.note("team/app", "sha256:" + "f" * 64)
    recorder.flush()
    assert set(pulled(db).values()) == {None}


def test_the_thread_flushes_on_its_interval_and_close_writes_the_rest(db: Database) -> None:
    recorder = PullRecorder(db, interval=0.05)
    recorder.note("team/app", DIGESTS[0])
    deadline = time.monotonic() + 5
    while pulled(db)[("team/app", DIGESTS[0])] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pulled(db)[("team/app", DIGESTS[0])] is not None

    closing = PullRecorder(db, interval=3600)
    closing.note("team/other", DIGESTS[2])
    closing.close()
    assert pulled(db)[("team/other", DIGESTS[2])] is not None
    recorder.close()


def test_a_failed_write_is_retried_at_the_next_flush(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = PullRecorder(db, interval=3600, clock=Clock(T0))
    recorder.note("team/app", DIGESTS[1])
    real_write = db.write
    monkeypatch.setattr(db, "write", lambda: (_ for _ in ()).throw(RuntimeError("database is locked")))
    assert recorder.flush() == 0
    monkeypatch.setattr(db, "write", real_write)
    assert recorder.flush() == 1
    assert pulled(db)[("team/app", DIGESTS[1])] == T0.replace(second=0, microsecond=0)


def flush_at_once(*recorders: PullRecorder) -> list[int]:
    """Each recorder's flush, all started at the same moment in threads of their own."""
    start = threading.Barrier(len(recorders))
    written = [0] * len(recorders)

    def flush(index: int) -> None:
        start.wait()
        written[index] = recorders[index].flush()

    threads = [threading.Thread(target=flush, args=(index,)) for index in range(len(recorders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return written


def test_workers_flushing_the_same_pulls_at_once_both_succeed(db: Database) -> None:
    """Two worker processes noted the same manifests in opposite orders and flush at the same moment.
    On PostgreSQL each UPDATE holds its row's lock until the commit: batches written in pull order
    deadlocked, and one of them failed (carried to the next flush, written twice)."""
    count = 300
    digests = [f"sha256:{n:064x}" for n in range(count)]
    with db.write() as connection:
        repository_id = connection.execute(
            insert(Repository).values(name="team/many", created_at=utcnow())
        ).inserted_primary_key[0]  # type: ignore[index]
        connection.execute(
            insert(Manifest),
            [
                {
                    "repository_id": repository_id,
                    "digest": digest,
                    "media_type": "application/vnd.oci.image.manifest.v1+json",
                    "size": 2,
                    "content": b"{}",
                    "created_at": utcnow(),
                }
                for digest in digests
            ],
        )
    for minute in range(3):
        clock = Clock(T0 + timedelta(minutes=minute))
        ascending, descending = PullRecorder(db, 3600, clock), PullRecorder(db, 3600, clock)
        for digest in digests:
            ascending.note("team/many", digest)
        for digest in reversed(digests):
            descending.note("team/many", digest)
        written = flush_at_once(ascending, descending)
        assert written == [count, count]
        moment = clock.now.replace(second=0, microsecond=0)
        times = pulled(db)
        assert all(times[("team/many", digest)] == moment for digest in digests)
