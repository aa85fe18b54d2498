"""Enqueue, run, look at, cancel and retry jobs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest

from dockyard.jobs.interfaces import JobContext, JobKind, JobNotFound, JobStateError, UnknownJobKind
from dockyard.jobs.services import JobQueue
from tests.unit.jobs.conftest import RunnerFactory


def echo(ctx: JobContext) -> Mapping[str, Any]:
    ctx.log(f"echoing {dict(ctx.params)}")
    ctx.progress(1, 1)
    return {"echo": dict(ctx.params)}


def test_a_job_runs_once_and_keeps_its_history(queue: JobQueue, make_runner: RunnerFactory) -> None:
    runner = make_runner([JobKind("echo", echo)])
    job_id = queue.enqueue("echo", {"n": 1})
    assert queue.get(job_id).status == "queued"

    finished = runner.run_job_here(job_id, timeout=30)

    assert finished.status == "succeeded"
    assert finished.result == {"echo": {"n": 1}}
    assert (finished.attempts, finished.progress_done, finished.progress_total) == (1, 1, 1)
    assert finished.started_at is not None and finished.finished_at is not None
    lines = [entry.line for entry in queue.logs(job_id)]
    assert "echoing {'n': 1}" in lines
    assert runner.run_pending() == 0  # nothing left to run


def test_unknown_job_and_kind_are_clear_errors(database: Any) -> None:
    queue = JobQueue(database, known_kinds=["echo"])
    with pytest.raises(UnknownJobKind, match="unknown job kind 'nope'; known kinds: echo"):
        queue.enqueue("nope")
    with pytest.raises(JobNotFound):
        queue.get(12345)


def test_list_filters_and_pages(queue: JobQueue, make_runner: RunnerFactory) -> None:
    ids = [queue.enqueue("echo", {"n": n}) for n in range(5)]
    queue.enqueue("other")
    make_runner([JobKind("echo", echo)]).run_job_here(ids[0])

    page = queue.list(kind="echo", page=1, page_size=2)
    assert page.total == 5 and [job.id for job in page.items] == [ids[4], ids[3]]
    assert [job.id for job in queue.list(status="succeeded").items] == [ids[0]]
    assert queue.list(kind="other", status="queued").total == 1
    with pytest.raises(JobStateError):
        queue.list(status="bogus")


def test_cancel_a_queued_job_and_retry_it(queue: JobQueue, make_runner: RunnerFactory) -> None:
    job_id = queue.enqueue("echo", {"n": 7})
    cancelled = queue.cancel(job_id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(JobStateError, match="already been cancelled"):
        queue.cancel(job_id)

    again = queue.retry(job_id)
    assert again.id != job_id and again.retry_of == job_id and again.status == "queued"
    assert make_runner([JobKind("echo", echo)]).run_job_here(again.id).status == "succeeded"
    with pytest.raises(JobStateError, match="only failed or cancelled"):
        queue.retry(again.id)


def test_a_started_runner_picks_up_new_jobs(queue: JobQueue, make_runner: RunnerFactory) -> None:
    make_runner([JobKind("echo", echo)], start=True)
    job_id = queue.enqueue("echo")
    deadline = time.monotonic() + 20
    while queue.get(job_id).status != "succeeded":
        assert time.monotonic() < deadline, queue.get(job_id)
        time.sleep(0.05)


def test_a_job_enqueued_in_a_transaction_exists_only_if_it_commits(database: Any, queue: JobQueue) -> None:
    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), database.write() as connection:
        queue.enqueue("echo", {"n": 1}, connection=connection)
        raise Abandoned
    assert queue.list().total == 0

    with database.write() as connection:
        job_id = queue.enqueue("echo", {"n": 2}, connection=connection)
    assert queue.get(job_id).params == {"n": 2}
