"""Recording off the request path: events are queued, written in batches, and never lost on the way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection

from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditFilter
from dockyard.audit.services import AuditLog
from dockyard.db.session import Database


def pull(actor: str = "alice", name: str = "team/app:1.0") -> AuditEvent:
    return AuditEvent(AuditAction.PULL, actor, ActorKind.USER, resource_name=name)


def stored(database: Database) -> int:
    return AuditLog(database).query(page_size=1).total


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def slow_log(database: Database) -> Iterator[AuditLog]:
    """A log whose timer never fires during a test: only flush, close or a full batch write."""
    log = AuditLog(database, flush_interval=3600, batch_size=100, max_pending=10_000)
    yield log
    log.close()


def test_events_reach_the_database_on_flush_not_on_record(slow_log: AuditLog, database: Database) -> None:
    for _ in range(5):
        slow_log.record(pull())
    assert stored(database) == 0
    assert slow_log.pending == 5
    slow_log.flush()
    assert stored(database) == 5
    assert slow_log.pending == 0


def test_the_background_writer_flushes_on_its_timer(database: Database) -> None:
    log = AuditLog(database, flush_interval=0.1)
    try:
        log.record(pull())
        assert wait_for(lambda: stored(database) == 1)
    finally:
        log.close()


def test_a_full_batch_is_written_without_waiting_for_the_timer(
    slow_log: AuditLog, database: Database
) -> None:
    for _ in range(99):
        slow_log.record(pull())
    time.sleep(0.3)
    assert stored(database) == 0
    slow_log.record(pull())  # the 100th: a full batch wakes the writer
    assert wait_for(lambda: stored(database) == 100)


def test_close_writes_what_is_queued_and_later_records_still_arrive(database: Database) -> None:
    log = AuditLog(database, flush_interval=3600)
    for i in range(250):
        log.record(pull(actor=f"user{i}"))
    log.close()
    assert stored(database) == 250
    log.record(pull(actor="late"))  # e.g. a request finishing during shutdown
    assert AuditLog(database).query(AuditFilter(actor="late")).total == 1


def test_concurrent_recording_from_many_threads_loses_nothing(database: Database) -> None:
    log = AuditLog(database, flush_interval=0.05, batch_size=50)
    threads, per_thread = 8, 400
    start = threading.Barrier(threads)

    def worker(number: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.record(pull(actor=f"t{number}", name=f"team/app:{i}"))
            if i % 100 == 0:
                log.flush()  # flushes race the background writer too

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    log.close()
    reader = AuditLog(database)
    assert reader.query(page_size=1).total == threads * per_thread
    for number in range(threads):
        page = reader.query(AuditFilter(actor=f"t{number}"), page_size=1000, sort="occurred_at")
        # Each thread's events, each once, in the order that thread recorded them.
        assert [item.resource_name for item in page.items] == [f"team/app:{i}" for i in range(per_thread)]


class FlakyDatabase(Database):
    """Refuses writes while `down` is set, as a database that went away would."""

    def __init__(self, real: Database) -> None:
        super().__init__(real.engine)
        self.down = False

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self.down:
            raise ConnectionError("database unreachable")
        with super().write() as connection:
            yield connection


def test_events_survive_a_database_outage(database: Database) -> None:
    flaky = FlakyDatabase(database)
    log = AuditLog(flaky, flush_interval=3600)
    flaky.down = True
    for i in range(3):
        log.record(pull(actor=f"before{i}"))
    with pytest.raises(RuntimeError, match="3 events could not be written"):
        log.flush()
    log.record(pull(actor="during"))
    assert log.pending == 4
    flaky.down = False
    log.close()
    actors = [item.actor for item in AuditLog(database).query(sort="occurred_at").items]
    assert actors == ["before0", "before1", "before2", "during"]
    assert log.dropped == 0


def test_a_long_outage_drops_the_oldest_events_and_counts_them(database: Database) -> None:
    flaky = FlakyDatabase(database)
    log = AuditLog(flaky, flush_interval=3600, batch_size=10, max_pending=20)
    flaky.down = True
    for i in range(25):
        log.record(pull(actor=f"user{i:02}"))
    assert (log.pending, log.dropped) == (20, 5)
    flaky.down = False
    log.close()
    actors = [item.actor for item in AuditLog(database).query(sort="occurred_at", page_size=100).items]
    assert actors == [f"user{i:02}" for i in range(5, 25)]


def test_the_background_writer_retries_after_an_outage(database: Database) -> None:
    flaky = FlakyDatabase(database)
    log = AuditLog(flaky, flush_interval=0.05)
    try:
        flaky.down = True
        log.record(pull())
        time.sleep(0.3)  # several failed attempts
        assert log.pending == 1
        flaky.down = False
        assert wait_for(lambda: stored(database) == 1)
    finally:
        log.close()
