"""Retries with backoff, timeouts, cancellation, following another worker's job, schedules, history."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.interfaces import JobContext, JobKind, JobRecord
from dockyard.jobs.models import JobRow, JobScheduleRow
from dockyard.jobs.services import JobQueue
from tests.unit.jobs.conftest import RunnerFactory
from tests.unit.jobs.test_claims import wait_until


def test_a_failing_job_is_retried_with_growing_delays_then_fails(
    queue: JobQueue, make_runner: RunnerFactory
) -> None:
    attempts: list[float] = []

    def flaky(ctx: JobContext) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError(f"boom {len(attempts)}")

    job_id = queue.enqueue("flaky")
    make_runner([JobKind("flaky", flaky, max_attempts=3)], start=True, retry_base=0.2)

    wait_until(lambda: queue.get(job_id).finished)
    job = queue.get(job_id)
    assert job.status == "failed" and job.attempts == 3 and job.error == "RuntimeError: boom 3"
    first_delay, second_delay = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first_delay >= 0.2 and second_delay >= 0.4  # 0.2s, then doubled
    logs = [entry.line for entry in queue.logs(job_id)]
    assert sum(line.startswith("failed: RuntimeError: boom") and "retrying at" in line for line in logs) == 2
    assert logs[-1] == "failed: RuntimeError: boom 3"


def test_a_job_that_fails_once_succeeds_on_its_retry(queue: JobQueue, make_runner: RunnerFactory) -> None:
    calls = 0

    def once(ctx: JobContext) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk hiccup")
        return {"calls": calls}

    job_id = queue.enqueue("once")
    make_runner([JobKind("once", once)], start=True)
    wait_until(lambda: queue.get(job_id).finished)
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.result) == ("succeeded", 2, {"calls": 2})
    assert job.error is None


def test_a_job_past_its_timeout_fails_and_is_not_retried(queue: JobQueue, make_runner: RunnerFactory) -> None:
    def slow(ctx: JobContext) -> None:
        while True:
            ctx.check_cancelled()
            time.sleep(0.05)

    job_id = queue.enqueue("slow")
    runner = make_runner([JobKind("slow", slow, timeout=timedelta(seconds=0.5))])
    job = runner.run_job_here(job_id, timeout=30)
    assert job.status == "failed" and job.attempts == 1
    assert job.error is not None and "ran past its timeout" in job.error


def test_cancelling_a_running_job_stops_its_handler_within_two_seconds(
    queue: JobQueue, make_runner: RunnerFactory
) -> None:
    stopped = threading.Event()

    def patient(ctx: JobContext) -> None:
        try:
            while True:
                ctx.progress(1, 10)
                ctx.check_cancelled()
                time.sleep(0.02)
        finally:
            stopped.set()

    job_id = queue.enqueue("patient")
    make_runner([JobKind("patient", patient)], start=True)
    wait_until(lambda: queue.get(job_id).status == "running")

    asked = time.monotonic()
    assert queue.cancel(job_id).cancel_requested
    assert stopped.wait(5)
    assert time.monotonic() - asked < 2.0
    wait_until(lambda: queue.get(job_id).finished)
    job = queue.get(job_id)
    assert job.status == "cancelled" and job.finished_at is not None


def test_a_result_that_is_not_json_fails_the_attempt(queue: JobQueue, make_runner: RunnerFactory) -> None:
    job_id = queue.enqueue("odd")
    job = make_runner([JobKind("odd", lambda ctx: {"when": object()}, max_attempts=1)]).run_job_here(job_id)
    assert job.status == "failed" and job.error is not None and "TypeError" in job.error


def test_run_job_here_follows_a_job_another_worker_runs(queue: JobQueue, make_runner: RunnerFactory) -> None:
    followed = threading.Event()  # the follower saw the job's progress while it ran

    def counted(ctx: JobContext) -> dict[str, Any]:
        for done in range(1, 4):
            ctx.check_cancelled()
            ctx.progress(done, 3)
        assert followed.wait(30)
        return {"ok": True}

    kind = JobKind("counted", counted)
    job_id = queue.enqueue("counted")
    make_runner([kind], start=True)
    wait_until(lambda: queue.get(job_id).status == "running")

    seen: list[JobRecord] = []

    def on_progress(record: JobRecord) -> None:
        seen.append(record)
        if record.progress_done >= 1:
            followed.set()

    job = make_runner([kind]).run_job_here(job_id, timeout=30, on_progress=on_progress)

    assert job.status == "succeeded" and job.attempts == 1  # followed, not run a second time
    assert any(record.progress_done >= 1 and record.progress_total == 3 for record in seen)


def test_run_job_here_reports_progress_of_a_job_it_runs(queue: JobQueue, make_runner: RunnerFactory) -> None:
    def steps(ctx: JobContext) -> None:
        for done in range(5):
            ctx.progress(done + 1, 5)

    seen: list[tuple[int, int | None]] = []
    job_id = queue.enqueue("steps")
    job = make_runner([JobKind("steps", steps)]).run_job_here(
        job_id, on_progress=lambda record: seen.append((record.progress_done, record.progress_total))
    )
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert (job.progress_done, job.progress_total) == (5, 5)


def test_a_due_schedule_fires_one_job_across_two_runners(
    database: Database, queue: JobQueue, make_runner: RunnerFactory
) -> None:
    fired = threading.Event()

    def nightly(ctx: JobContext) -> None:
        fired.set()

    kind = JobKind("nightly", nightly)
    queue.set_schedule("nightly", "0 3 * * *", {"deep": True})
    runners = [make_runner([kind]), make_runner([kind])]
    _make_due(database, "nightly")

    barrier = threading.Barrier(2)

    def tick(runner: Any) -> None:
        barrier.wait()
        runner.tick()

    threads = [threading.Thread(target=tick, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    jobs = queue.list(kind="nightly").items
    assert len(jobs) == 1 and jobs[0].params == {"deep": True}
    schedule = queue.schedule("nightly")
    assert schedule.last_job_id == jobs[0].id and schedule.next_run_at > utcnow()
    assert (schedule.next_run_at.hour, schedule.next_run_at.minute) == (3, 0)
    assert runners[0].run_pending() == 1 and fired.is_set()


def test_a_schedule_does_not_pile_up_jobs_while_one_is_queued(
    database: Database, queue: JobQueue, make_runner: RunnerFactory
) -> None:
    runner = make_runner([JobKind("hourly", lambda ctx: None)])
    queue.set_schedule("hourly", "@hourly")
    for _ in range(3):
        _make_due(database, "hourly")
        runner.tick()
    assert queue.list(kind="hourly").total == 1


def test_default_schedules_follow_the_kind_until_an_operator_sets_one(
    queue: JobQueue, make_runner: RunnerFactory
) -> None:
    make_runner([JobKind("purge", lambda ctx: None, default_schedule="17 * * * *")], start=True)
    assert queue.schedule("purge").cron == "17 * * * *" and queue.schedule("purge").origin == "default"
    # The config changed (a kind's default comes from it): the default schedule follows.
    make_runner([JobKind("purge", lambda ctx: None, default_schedule="@every 6h")], start=True)
    assert queue.schedule("purge").cron == "@every 6h"
    # Turned off in the config: the default schedule is disabled, not deleted.
    make_runner([JobKind("purge", lambda ctx: None)], start=True)
    assert queue.schedule("purge").enabled is False

    queue.set_schedule("purge", "0 */6 * * *", enabled=True)
    make_runner([JobKind("purge", lambda ctx: None, default_schedule="17 * * * *")], start=True)
    make_runner([JobKind("purge", lambda ctx: None)], start=True)
    schedule = queue.schedule("purge")
    assert (schedule.cron, schedule.enabled, schedule.origin) == ("0 */6 * * *", True, "api")


def test_a_new_every_schedule_fires_at_once_then_at_its_interval(
    queue: JobQueue, make_runner: RunnerFactory
) -> None:
    runner = make_runner([JobKind("purge", lambda ctx: None, default_schedule="@every 1h")], start=True)
    wait_until(lambda: queue.list(kind="purge", status="succeeded").total == 1)
    runner.tick()
    assert queue.list(kind="purge").total == 1
    next_run = queue.schedule("purge").next_run_at
    assert timedelta(minutes=59) < next_run - utcnow() <= timedelta(hours=1)


def test_old_finished_jobs_and_their_logs_are_purged(
    database: Database, queue: JobQueue, make_runner: RunnerFactory
) -> None:
    runner = make_runner([JobKind("echo", lambda ctx: ctx.log("hello"))], history=timedelta(hours=1))
    old, recent = queue.enqueue("echo"), queue.enqueue("echo")
    runner.run_pending()
    waiting = queue.enqueue("echo")
    with database.write() as connection:
        connection.execute(
            update(JobRow).where(JobRow.id == old).values(finished_at=utcnow() - timedelta(hours=2))
        )

    runner.tick()

    remaining = {job.id for job in queue.list().items}
    assert remaining == {recent, waiting}
    assert queue.logs(old) == [] and queue.logs(recent)


def _make_due(database: Database, kind: str) -> None:
    with database.write() as connection:
        connection.execute(
            update(JobScheduleRow)
            .where(JobScheduleRow.kind == kind)
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )


def test_a_job_the_registry_turns_read_only_under_waits_quietly_and_is_not_failed(
    queue: JobQueue, make_runner: RunnerFactory, caplog: Any
) -> None:
    """`dockyard read-only on` while a job runs: its writes raise ReadOnly; the job is neither failed
    nor retried with a traceback: nothing is recorded and it stays claimed until its lease runs out."""
    from dockyard.errors import ReadOnly

    ran = threading.Event()

    def writes(ctx: JobContext) -> None:
        ran.set()
        raise ReadOnly()

    job_id = queue.enqueue("writes")
    with caplog.at_level("INFO", logger="dockyard.jobs"):
        make_runner([JobKind("writes", writes, max_attempts=3)], start=True)
        assert ran.wait(10)
        wait_until(lambda: any("read-only" in r.getMessage() for r in caplog.records))
    job = queue.get(job_id)
    assert job.status == "running" and job.error is None and not job.finished
    assert not [r for r in caplog.records if r.exc_info or r.levelname in ("WARNING", "ERROR")]


class _TurnsOnAfterFirstCheck:
    """`dockyard read-only on` between the runner's check and its first write (seen in CI: the job
    worker `serve` starts late on a loaded machine, as the operator switches the registry read-only)."""

    def __init__(self) -> None:
        self.checks = 0

    def is_on(self) -> bool:
        self.checks += 1
        return self.checks > 1


def test_a_runner_that_starts_as_the_registry_turns_read_only_keeps_running_quietly(
    queue: JobQueue, make_runner: RunnerFactory, caplog: Any
) -> None:
    flag = _TurnsOnAfterFirstCheck()
    queue.db.read_only_flag = flag  # type: ignore[assignment]
    kinds = [JobKind("sweep", lambda ctx: None, default_schedule="@every 5m")]
    with caplog.at_level("INFO", logger="dockyard.jobs"):
        runner = make_runner(kinds, start=True)  # raised ReadOnly out of start() before: worker exit 1
        wait_until(lambda: flag.checks > 3)  # the dispatcher went on with its rounds
    assert runner._dispatcher is not None and runner._dispatcher.is_alive()
    assert not [r for r in caplog.records if r.exc_info or r.levelname in ("WARNING", "ERROR")]
    queue.db.read_only_flag = None  # writes are back: the default schedule appears
    wait_until(lambda: any(s.kind == "sweep" for s in queue.schedules()))


def test_a_job_queued_where_its_kind_is_unknown_still_gets_its_kinds_attempts(
    queue: JobQueue, make_runner: RunnerFactory
) -> None:
    """An HTTP worker queues jobs without the runner's kinds (the default of 3 attempts): a kind of one
    attempt (scans) fails after one, not after two retries with their backoff (a Harbor client of the
    scanner API waited 30 s for a 401 it could have had at once)."""
    attempts: list[int] = []

    def fails(ctx: JobContext) -> None:
        attempts.append(1)
        raise RuntimeError("the registry answered 401")

    runner = make_runner([JobKind("once", fails, max_attempts=1)])
    job_id = JobQueue(queue.db).enqueue("once")  # a queue that never met the runner's kinds
    assert queue.get(job_id).max_attempts == 3
    runner.run_pending()
    job = queue.get(job_id)
    assert (job.status, len(attempts)) == ("failed", 1), job


def test_the_dispatcher_syncs_a_running_job_about_once_a_second_not_every_round(
    queue: JobQueue, make_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a handler runs, the dispatcher (polling every 50 ms here) writes its progress and renews
    its lease with the handler's own syncs, at most about once a second: not a query every round."""
    from dockyard.jobs import claims

    syncs: list[float] = []
    real_sync = claims.sync

    def counted(*args: Any, **kwargs: Any) -> Any:
        syncs.append(time.monotonic())
        return real_sync(*args, **kwargs)

    monkeypatch.setattr(claims, "sync", counted)
    release = threading.Event()

    def busy(ctx: JobContext) -> None:  # never looks at the cancel flag: only the dispatcher syncs
        ctx.progress(1, 2)
        release.wait(10)

    job_id = queue.enqueue("busy")
    make_runner([JobKind("busy", busy)], start=True)
    wait_until(lambda: queue.get(job_id).status == "running")
    started = time.monotonic()
    wait_until(lambda: queue.get(job_id).progress_done == 1)  # written by the dispatcher's sync
    time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
    release.set()
    wait_until(lambda: queue.get(job_id).finished)
    during = [at for at in syncs if started <= at <= started + 1.6]
    assert 1 <= len(during) <= 3, len(during)  # 1.6 s at a 50 ms poll: 32 rounds


def test_a_kinds_warm_up_runs_a_while_after_the_start_unless_the_runner_stopped(
    queue: JobQueue, make_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JobKind.warm_up (what its first job would load) runs on a thread of its own WARM_UP_DELAY after
    the runner started, not in a job; a runner stopped before then never runs it."""
    from dockyard.jobs import runner as runner_module

    monkeypatch.setattr(runner_module, "WARM_UP_DELAY", 0.3)
    warmed: list[tuple[float, str]] = []

    def warm_up() -> None:
        warmed.append((time.monotonic(), threading.current_thread().name))

    kind = JobKind("warm", lambda ctx: None, warm_up=warm_up)
    started = time.monotonic()
    make_runner([kind], start=True)
    wait_until(lambda: bool(warmed))
    assert warmed[0][0] - started >= 0.3 and warmed[0][1] == "dockyard-warm"
    warmed.clear()
    stopped = make_runner([kind], start=True)
    stopped.stop(timeout=10)
    time.sleep(0.6)
    assert warmed == []
