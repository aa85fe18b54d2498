"""Claiming under contention, concurrency limits, leases: each job runs once, however many runners."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs import claims
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.models import JobRow
from dockyard.jobs.services import JobQueue
from tests.unit.jobs.conftest import RunnerFactory


def wait_until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_racing_runners_run_each_job_exactly_once(
    database_url: str, queue: JobQueue, make_runner: RunnerFactory
) -> None:
    """Four runners of four threads each, each on its own engine (as separate nodes are), 60 jobs."""
    from dockyard.db.engine import build_engine

    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def count(ctx: JobContext) -> Mapping[str, Any]:
        with lock:
            runs[int(ctx.params["n"])] += 1
        time.sleep(0.005)
        return {"n": ctx.params["n"]}

    kind = JobKind("count", count, concurrency=100)
    ids = [queue.enqueue("count", {"n": n}) for n in range(60)]
    nodes = [JobQueue(Database(build_engine(database_url))) for _ in range(4)]
    # A lease far past any stall: this is about racing claims, not about leases running out (with the
    # usual 3 s, a runner starved that long on a loaded machine lost its job to another, run twice).
    lease = timedelta(seconds=60)
    runners = [make_runner([kind], start=True, on=node, threads=4, lease=lease) for node in nodes]

    wait_until(lambda: queue.list(kind="count", status="succeeded").total == 60, seconds=120)
    for runner in runners:
        runner.stop()
        runner.queue.db.dispose()

    assert runs == Counter(range(60))
    assert all(queue.get(job_id).attempts == 1 for job_id in ids)


def test_claims_respect_the_kind_concurrency_limit_across_runners(
    queue: JobQueue, make_runner: RunnerFactory
) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def exclusive(ctx: JobContext) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1

    kind = JobKind("exclusive", exclusive, concurrency=1)
    for _ in range(4):
        queue.enqueue("exclusive")
    make_runner([kind], start=True, threads=3)
    make_runner([kind], start=True, threads=3)

    wait_until(lambda: queue.list(kind="exclusive", status="succeeded").total == 4)
    assert most == 1


def test_a_limit_leaves_other_kinds_free(queue: JobQueue, make_runner: RunnerFactory) -> None:
    release = threading.Event()

    def wait_for_release(ctx: JobContext) -> None:
        release.wait(20)

    busy = JobKind("busy", wait_for_release, concurrency=1)
    quick = JobKind("quick", lambda ctx: {"ok": True})
    first, second = queue.enqueue("busy"), queue.enqueue("busy")
    later = queue.enqueue("quick")
    make_runner([busy, quick], start=True, threads=3)

    wait_until(lambda: queue.get(later).status == "succeeded")
    assert queue.get(first).status == "running" and queue.get(second).status == "queued"
    release.set()
    wait_until(lambda: queue.get(second).status == "succeeded")


def test_an_expired_lease_is_taken_back_and_the_stale_worker_cannot_finish(
    database: Database, queue: JobQueue, make_runner: RunnerFactory
) -> None:
    job_id = queue.enqueue("echo", {"n": 1})
    stale = claims.claim_next(database, {"echo": 1}, "dead-node/1/aaaa", timedelta(seconds=30))
    assert stale is not None and stale.id == job_id
    _expire_lease(database, job_id)

    runner = make_runner([JobKind("echo", lambda ctx: {"by": "second"})])
    finished = runner.run_job_here(job_id, timeout=30)

    assert finished.status == "succeeded" and finished.result == {"by": "second"} and finished.attempts == 2
    # The first worker comes back to life: every write it tries is refused.
    assert not claims.finish(database, stale, status="succeeded", result={"by": "stale"})
    assert not claims.sync(database, stale, lease=timedelta(seconds=30), progress=(5, 5), lines=[]).alive
    assert queue.get(job_id).result == {"by": "second"}
    logs = [entry.line for entry in queue.logs(job_id)]
    assert sum("stopped renewing its lease; queued again" in line for line in logs) == 1


def test_a_lost_job_with_no_attempts_left_fails(database: Database, queue: JobQueue) -> None:
    job_id = queue.enqueue("echo")
    with database.write() as connection:
        connection.execute(update(JobRow).where(JobRow.id == job_id).values(max_attempts=1))
    assert claims.claim_next(database, {"echo": 1}, "n/1/x", timedelta(seconds=30)) is not None
    _expire_lease(database, job_id)

    assert claims.reap_expired(database) == [job_id]
    job = queue.get(job_id)
    assert job.status == "failed" and job.error is not None and "stopped renewing its lease" in job.error


def test_a_running_worker_renews_its_lease(queue: JobQueue, make_runner: RunnerFactory) -> None:
    """A job longer than the lease keeps its worker: the heartbeat renews it."""

    def long(ctx: JobContext) -> None:
        time.sleep(1.6)  # the other runner reaps at each poll (0.05 s) from the lease's end at 1 s

    kind = JobKind("long", long)
    job_id = queue.enqueue("long")
    make_runner([kind], start=True, lease=timedelta(seconds=1))
    make_runner([kind], start=True, lease=timedelta(seconds=1))

    wait_until(lambda: queue.get(job_id).finished)
    assert queue.get(job_id).status == "succeeded" and queue.get(job_id).attempts == 1


def test_stopping_a_runner_hands_its_job_back(queue: JobQueue, make_runner: RunnerFactory) -> None:
    def patient(ctx: JobContext) -> None:
        while True:
            ctx.check_cancelled()
            time.sleep(0.05)

    job_id = queue.enqueue("patient")
    runner = make_runner([JobKind("patient", patient)], start=True)
    wait_until(lambda: queue.get(job_id).status == "running")
    runner.stop(timeout=10)

    job = queue.get(job_id)
    assert job.status == "queued" and job.finished_at is None
    assert job.run_after <= utcnow()


def _expire_lease(database: Database, job_id: int) -> None:
    with database.write() as connection:
        connection.execute(
            update(JobRow).where(JobRow.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
