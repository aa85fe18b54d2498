"""A job queued by another process (an HTTP worker) or node starts at once, not at the runner's next
poll: the queue bumps the change feed's Topic.JOBS once the job is committed, and a waiting runner
watches it. On the node's shared file and on Redis; on SQLite and PostgreSQL (`database`)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dockyard.coordination.feeds import LocalChangeFeed
from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.base import utcnow
from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.services import JobQueue, JobRunner
from tests.support.redis import RedisServer
from tests.unit.jobs.test_claims import wait_until

# Far longer than any test here waits: a job that starts did not wait for a poll.
POLL = 60.0
LEASE = timedelta(minutes=10)  # the dispatcher also wakes every third of its lease
STARTED_WITHIN = 10.0  # seconds; a poll would take POLL


@pytest.fixture(params=["file", "redis"])
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ChangeFeed]]:
    """Each call: another process's view of one feed (the node's file, or Redis: another node's)."""
    made: list[ChangeFeed] = []

    def make() -> ChangeFeed:
        feed: ChangeFeed
        if request.param == "file":
            feed = LocalChangeFeed(tmp_path / "changes")
        else:
            from dockyard.coordination.feeds_redis import RedisChangeFeed
            from dockyard.coordination.redis_client import connect

            server: RedisServer = request.getfixturevalue("redis_server")
            redis_feed = RedisChangeFeed(
                connect(server.url), channel=f"test:{tmp_path.name}", poll_seconds=0.05, retry_seconds=0.05
            )
            assert redis_feed.wait_connected(5)
            feed = redis_feed
        made.append(feed)
        return feed

    yield make
    for feed in made:
        close = getattr(feed, "close", None)
        if close is not None:
            close()


@pytest.fixture
def other_database(database_url: str) -> Iterator[Database]:
    """The same database through an engine of its own, as another process has."""
    other = Database(build_engine(database_url))
    yield other
    other.dispose()


def echo(ctx: JobContext) -> dict[str, int]:
    return {"n": int(ctx.params.get("n", 0))}


def start_runner(queue: JobQueue, kinds: list[JobKind], **options: object) -> JobRunner:
    settings: dict[str, object] = {"poll_interval": POLL, "lease": LEASE, "schedules": False, **options}
    runner = JobRunner(queue, kinds, node="runner", **settings)  # type: ignore[arg-type]
    runner.start()
    return runner


def finished_within(queue: JobQueue, job_id: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if queue.get(job_id).finished:
            return True
        time.sleep(0.02)
    return False


def test_a_job_queued_by_another_process_starts_at_once_not_at_the_next_poll(
    database: Database, other_database: Database, views: Callable[[], ChangeFeed]
) -> None:
    http_worker = JobQueue(database, feed=views())
    runner = start_runner(JobQueue(other_database, feed=views()), [JobKind("echo", echo)])
    try:
        time.sleep(0.3)  # the runner's first round is over: it waits for its next poll
        for n in range(3):  # one could be lucky and meet a poll; three in a row cannot
            job_id = http_worker.enqueue("echo", {"n": n})
            assert finished_within(http_worker, job_id, STARTED_WITHIN), http_worker.get(job_id)
            assert http_worker.get(job_id).result == {"n": n}
        # Queued inside a transaction of the caller's (a push's scan, a webhook): once it commits.
        with database.write() as connection:
            job_id = http_worker.enqueue("echo", {"n": 9}, connection=connection)
        assert finished_within(http_worker, job_id, STARTED_WITHIN), http_worker.get(job_id)
    finally:
        runner.stop(timeout=10)


def test_runners_are_told_of_a_job_only_once_its_transaction_commits(
    database: Database, views: Callable[[], ChangeFeed]
) -> None:
    feed, elsewhere = views(), views()
    queue = JobQueue(database, feed=feed)
    seen = elsewhere.generation(Topic.JOBS)
    with database.write() as connection:
        queue.enqueue("echo", connection=connection)
        time.sleep(0.2)  # a Redis bump would have arrived by now
        # A runner told now would find nothing (not committed) and wait for its next poll.
        assert elsewhere.generation(Topic.JOBS) == seen
        assert not queue.wakeup.is_set()
    wait_until(lambda: elsewhere.generation(Topic.JOBS) != seen, 5)
    assert queue.wakeup.is_set()

    class Abandoned(Exception):
        pass

    queue.wakeup.clear()
    seen = elsewhere.generation(Topic.JOBS)
    with pytest.raises(Abandoned), database.write() as connection:
        queue.enqueue("echo", connection=connection)
        raise Abandoned
    time.sleep(0.2)
    assert elsewhere.generation(Topic.JOBS) == seen and not queue.wakeup.is_set()
    assert queue.list().total == 1


class Unreachable:
    """A feed that cannot deliver (Redis away): a new generation on every read (ChangeFeed's contract)."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def generation(self, topic: Topic, key: str | None = None) -> int:
        return next(self._ticks)

    def bump(self, topic: Topic, *keys: str) -> None:
        pass


def test_a_feed_that_cannot_deliver_leaves_the_runner_on_its_poll_not_spinning(
    database: Database,
) -> None:
    queue = JobQueue(database, feed=Unreachable())
    rounds = 0
    runner = JobRunner(queue, [JobKind("echo", echo)], node="runner", poll_interval=POLL, lease=LEASE,
                       schedules=False)  # fmt: skip
    tick = runner.tick

    def counted() -> None:
        nonlocal rounds
        rounds += 1
        tick()

    runner.tick = counted  # type: ignore[method-assign]
    runner.start()
    try:
        wait_until(lambda: rounds == 1, 10)
        time.sleep(1.0)  # 20 looks at the feed
        assert rounds == 1  # the first round only: the next is a poll away
        job_id = queue.enqueue("echo")  # in this process: at once, feed or not
        assert finished_within(queue, job_id, STARTED_WITHIN)
    finally:
        runner.stop(timeout=10)


def test_a_job_queued_to_run_later_and_a_schedule_start_when_due_not_at_the_next_poll(
    database: Database,
) -> None:
    """A retry's backoff, a delayed delivery, a schedule: the runner waits until the first comes due."""
    queue = JobQueue(database)
    ran: list[datetime] = []

    def note(ctx: JobContext) -> None:
        ran.append(utcnow())

    runner = start_runner(queue, [JobKind("echo", echo), JobKind("tick", note)], schedules=True)
    try:
        time.sleep(0.3)  # the runner's first round is over: it waits for its next poll
        due = utcnow() + timedelta(seconds=1)
        job_id = queue.enqueue("echo", run_after=due)
        assert finished_within(queue, job_id, STARTED_WITHIN), queue.get(job_id)
        started = queue.get(job_id).started_at
        assert started is not None and started >= due  # not before its time either
        queue.set_schedule("tick", "@every 1s")  # the shortest interval a schedule may have
        wait_until(lambda: len(ran) >= 2, STARTED_WITHIN * 2)  # its first run, 1 s from now, then another
    finally:
        runner.stop(timeout=10)
