"""Pulls in the audit log are counted per (hour, manifest, principal) and added in batches: N pulls make
one row with the count N, processes add up, and the listing shows the counts beside single events."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from dockyard.audit.interfaces import (
    ActorKind,
    AuditAction,
    AuditEvent,
    AuditFilter,
    AuditResult,
    ResourceType,
)
from dockyard.audit.models import AuditEventRow, AuditPullCountRow
from dockyard.audit.pull_counts import PullCounter
from dockyard.audit.services import AuditLog
from dockyard.db.session import Database
from tests.unit.audit.test_batching import FlakyDatabase

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
APP = "team/app@sha256:" + "a" * 64
TOOL = "team/tool@sha256:" + "b" * 64
USER = ActorKind.USER


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(minutes=5))


@pytest.fixture
def counter(database: Database, clock: Clock) -> Iterator[PullCounter]:
    counter = PullCounter(database, interval=3600, clock=clock)  # tests flush explicitly
    yield counter
    counter.close()


@pytest.fixture
def audit(database: Database) -> Iterator[AuditLog]:
    log = AuditLog(database, flush_interval=3600)
    yield log
    log.close()


def rows(database: Database) -> list[tuple[datetime, str, str, str, str | None, int]]:
    c = AuditPullCountRow.__table__.c
    query = select(c.hour, c.resource_name, c.actor, c.actor_kind, c.client_ip, c.pulls).order_by(c.id)
    with database.read() as connection:
        return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


def events_table_size(database: Database) -> int:
    with database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(AuditEventRow)).scalar_one())


def test_n_pulls_in_an_hour_are_one_row_with_the_count_n(
    counter: PullCounter, database: Database, clock: Clock
) -> None:
    for minute in range(50):
        clock.now = T0 + timedelta(minutes=minute)
        counter.count(APP, "alice", USER, "10.0.0.1" if minute < 49 else "10.0.0.2")
    assert rows(database) == []  # counting is no database write
    assert counter.pending == 50
    assert counter.flush() == 1
    assert rows(database) == [(T0, APP, "alice", "user", "10.0.0.2", 50)]
    assert events_table_size(database) == 0
    assert counter.pending == 0


def test_each_hour_manifest_and_principal_is_a_row_of_its_own(
    counter: PullCounter, database: Database, clock: Clock
) -> None:
    counter.count(APP, "alice", USER, None)
    counter.count(APP, "robot$team+ci", ActorKind.ROBOT, None)
    counter.count(TOOL, "alice", USER, None)
    counter.count(APP, "", ActorKind.ANONYMOUS, None)
    clock.now = T0 + timedelta(hours=1, minutes=1)
    counter.count(APP, "alice", USER, None)
    counter.flush()
    assert sorted((r[0], r[1], r[2], r[5]) for r in rows(database)) == [
        (T0, APP, "", 1),
        (T0, APP, "alice", 1),
        (T0, APP, "robot$team+ci", 1),
        (T0, TOOL, "alice", 1),
        (T0 + timedelta(hours=1), APP, "alice", 1),
    ]


def test_batches_from_several_processes_add_up_in_one_row(
    counter: PullCounter, database: Database, clock: Clock
) -> None:
    other = PullCounter(database, interval=3600, clock=clock)  # another worker process, or node
    try:
        for _ in range(3):
            counter.count(APP, "alice", USER, "10.0.0.1")
        counter.flush()
        for _ in range(4):
            other.count(APP, "alice", USER, "10.0.0.9")
        other.flush()
        counter.count(APP, "alice", USER, "10.0.0.1")
        counter.flush()
    finally:
        other.close()
    assert rows(database) == [(T0, APP, "alice", "user", "10.0.0.1", 8)]


def test_overlapping_batches_flushed_at_once_both_add_up(database: Database, clock: Clock) -> None:
    """Two workers (or nodes) adding batches of the same keys at the same moment, counted in opposite
    orders: each batch goes in whole, none waits for the other to fail (a deadlock, on PostgreSQL,
    would fail one batch and carry it to a later flush)."""
    names = [f"team/app-{n:04d}@sha256:" + "c" * 64 for n in range(300)]
    ascending = PullCounter(database, interval=3600, clock=clock)
    descending = PullCounter(database, interval=3600, clock=clock)
    try:
        for round_number in range(3):
            for name in names:
                ascending.count(name, "alice", USER, "10.0.0.1")
            for name in reversed(names):
                descending.count(name, "alice", USER, "10.0.0.2")
            start = threading.Barrier(2)
            written = [0, 0]

            def flush(
                index: int,
                counter: PullCounter,
                barrier: threading.Barrier = start,
                into: list[int] = written,
            ) -> None:
                barrier.wait()
                into[index] = counter.flush()

            threads = [
                threading.Thread(target=flush, args=(index, counter))
                for index, counter in enumerate((ascending, descending))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert written == [len(names), len(names)]
            assert ascending.pending == descending.pending == 0
            found = rows(database)
            assert sorted(row[1] for row in found) == sorted(names)
            assert {row[5] for row in found} == {2 * (round_number + 1)}
    finally:
        ascending.close()
        descending.close()


def test_concurrent_counting_from_many_threads_loses_nothing(database: Database) -> None:
    counter = PullCounter(database, interval=0.01)  # its thread flushes all the while
    per_thread = 2000

    def pull() -> None:
        for _ in range(per_thread):
            counter.count(APP, "alice", USER, None)

    pool = [threading.Thread(target=pull) for _ in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    counter.close()
    assert sum(row[5] for row in rows(database)) == 4 * per_thread


KILLED_WORKER = """
import os, signal, sys
from dockyard.audit.interfaces import ActorKind
from dockyard.audit.pull_counts import PullCounter
from dockyard.db.engine import build_engine
from dockyard.db.session import Database

counter = PullCounter(Database(build_engine(sys.argv[1])), interval=3600)
for _ in range(5):
    counter.count(sys.argv[2], "alice", ActorKind.USER, None)
counter.flush()  # what its thread does every interval
for _ in range(3):
    counter.count(sys.argv[2], "alice", ActorKind.USER, None)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_process_loses_only_what_it_counted_since_its_last_batch(database: Database) -> None:
    url = database.engine.url.render_as_string(hide_password=False)
    killed = subprocess.run([sys.executable, "-c", KILLED_WORKER, url, APP], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert [row[5] for row in rows(database)] == [5]


def test_counts_survive_a_database_outage(database: Database, clock: Clock) -> None:
    flaky = FlakyDatabase(database)
    counter = PullCounter(flaky, interval=3600, clock=clock)
    flaky.down = True
    counter.count(APP, "alice", USER, None)
    counter.count(APP, "alice", USER, None)
    assert counter.flush() == 0
    counter.count(APP, "alice", USER, None)
    assert counter.pending == 3
    flaky.down = False
    counter.close()
    assert [row[5] for row in rows(database)] == [3]
    assert counter.dropped == 0


def test_a_long_outage_drops_the_oldest_counts_and_says_how_many(
    database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dockyard.audit.pull_counts.MAX_CARRIED", 2)
    flaky = FlakyDatabase(database)
    counter = PullCounter(flaky, interval=3600, clock=clock)
    flaky.down = True
    for name, pulls in (("team/a@1", 3), ("team/b@1", 1), ("team/c@1", 1)):
        for _ in range(pulls):
            counter.count(name, "alice", USER, None)
    counter.flush()
    assert (counter.dropped, counter.pending) == (3, 2)
    flaky.down = False
    counter.close()
    assert sorted((row[1], row[5]) for row in rows(database)) == [("team/b@1", 1), ("team/c@1", 1)]


def test_a_pull_counted_after_close_is_written_at_once(database: Database, clock: Clock) -> None:
    counter = PullCounter(database, interval=3600, clock=clock)
    counter.close()
    counter.count(APP, "alice", USER, None)  # a request that finished during shutdown
    assert [row[5] for row in rows(database)] == [1]


def test_over_long_values_are_cut_to_the_columns(counter: PullCounter, database: Database) -> None:
    long_name = "team/" + "x" * 600
    counter.count(long_name + "@1", "bob\x00" + "y" * 300, USER, None)
    counter.count(long_name + "@2", "bob" + "y" * 300, USER, None)  # the same row once cut
    counter.flush()
    ((_, name, actor, _, _, pulls),) = rows(database)
    assert (len(name), len(actor), pulls) == (512, 255, 2)


# --- the listing ---------------------------------------------------------------------------------


@pytest.fixture
def mixed(audit: AuditLog, counter: PullCounter, clock: Clock) -> None:
    """A push at 12:10, 7 pulls by alice and 2 by a robot in the 12:00 hour, 1 by alice at 13:xx."""
    audit.record(
        AuditEvent(
            AuditAction.PUSH,
            "alice",
            USER,
            resource_type=ResourceType.ARTIFACT,
            resource_name="team/app:1.0",
            occurred_at=T0 + timedelta(minutes=10),
        )
    )
    audit.flush()
    for _ in range(7):
        counter.count(APP, "alice", USER, "10.0.0.1")
    counter.count(TOOL, "robot$team+ci", ActorKind.ROBOT, "10.0.0.5")
    counter.count(TOOL, "robot$team+ci", ActorKind.ROBOT, "10.0.0.5")
    clock.now = T0 + timedelta(hours=1, minutes=30)
    counter.count(APP, "alice", USER, "10.0.0.1")
    counter.flush()


def summary(events: tuple[AuditEvent, ...]) -> list[tuple[str, str, str | None, int, bool]]:
    return [(str(e.action), e.actor, e.resource_name, e.count, e.hourly) for e in events]


@pytest.mark.usefixtures("mixed")
def test_the_listing_shows_hourly_counts_beside_single_events(audit: AuditLog) -> None:
    page = audit.query(sort="occurred_at")
    assert page.total == 4
    assert summary(page.items) == [
        ("pull", "alice", APP, 7, True),  # 12:00, the hour's start
        ("pull", "robot$team+ci", TOOL, 2, True),
        ("push", "alice", "team/app:1.0", 1, False),  # 12:10
        ("pull", "alice", APP, 1, True),  # 13:00
    ]
    first = page.items[0]
    assert first.occurred_at == T0 and first.id is None and first.detail is None
    assert (first.result, first.resource_type, first.client_ip) == (
        AuditResult.OK,
        ResourceType.ARTIFACT,
        "10.0.0.1",
    )
    newest_first = audit.query()
    assert [e.occurred_at for e in newest_first.items][:1] == [T0 + timedelta(hours=1)]


@pytest.mark.usefixtures("mixed")
def test_filters_apply_to_counts_as_to_events(audit: AuditLog) -> None:
    def listed(**filters: object) -> list[tuple[str, str, str | None, int, bool]]:
        return summary(audit.query(AuditFilter(**filters), sort="occurred_at").items)  # type: ignore[arg-type]

    assert listed(action=AuditAction.PUSH) == [("push", "alice", "team/app:1.0", 1, False)]
    assert listed(result=AuditResult.DENIED) == []
    assert listed(resource_type=ResourceType.REPOSITORY) == []
    assert [e[3] for e in listed(action=AuditAction.PULL, actor="alice")] == [7, 1]
    assert listed(actor_kind=ActorKind.ROBOT) == [("pull", "robot$team+ci", TOOL, 2, True)]
    assert listed(resource_name="team/tool") == [("pull", "robot$team+ci", TOOL, 2, True)]
    assert [e[3] for e in listed(client_ip="10.0.0.1")] == [7, 1]
    # An hour matches when it overlaps the range: 12:30 onwards includes the 12:00 hour's pulls.
    assert [e[3] for e in listed(action=AuditAction.PULL, since=T0 + timedelta(minutes=30))] == [7, 2, 1]
    assert [e[3] for e in listed(action=AuditAction.PULL, since=T0 + timedelta(hours=1))] == [1]
    assert [e[3] for e in listed(action=AuditAction.PULL, until=T0 + timedelta(hours=1))] == [7, 2]
    assert listed(until=T0) == []


@pytest.mark.usefixtures("mixed")
@pytest.mark.parametrize("sort", ["occurred_at", "-occurred_at", "actor", "-resource_name", "action"])
def test_pages_of_the_merged_listing_add_up_to_the_whole(audit: AuditLog, sort: str) -> None:
    whole = audit.query(sort=sort, page_size=10).items
    paged = [e for page in (1, 2, 3, 4) for e in audit.query(sort=sort, page=page, page_size=1).items]
    assert summary(tuple(paged)) == summary(whole)
    assert len(whole) == 4


@pytest.mark.usefixtures("mixed")
def test_the_purge_covers_counts_once_their_whole_hour_is_past(audit: AuditLog) -> None:
    # Retention 1h at 13:59: the push at 12:10 is older; the 12:00 hour's pulls may be as late as 12:59.
    assert audit.purge_older_than("1h", now=T0 + timedelta(hours=1, minutes=59)) == 1
    assert audit.purge_older_than("1h", now=T0 + timedelta(hours=2)) == 2
    assert summary(audit.query().items) == [("pull", "alice", APP, 1, True)]
    assert audit.purge_older_than("1h", now=T0 + timedelta(hours=2, minutes=59)) == 0
    assert audit.purge_older_than("1h", now=T0 + timedelta(hours=3)) == 1
    assert audit.query().total == 0
