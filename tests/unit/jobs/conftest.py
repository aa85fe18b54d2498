"""A migrated database per test, on SQLite and on a real PostgreSQL the tests start themselves: every
job test runs on both."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import pytest

from dockyard.db.session import Database
from dockyard.jobs.interfaces import JobKind
from dockyard.jobs.services import JobQueue, JobRunner


@pytest.fixture
def queue(database: Database) -> JobQueue:
    return JobQueue(database)


RunnerFactory = Callable[..., JobRunner]


@pytest.fixture
def make_runner(queue: JobQueue) -> Iterator[RunnerFactory]:
    """Runners with test-sized timings; started ones are stopped after the test."""
    started: list[JobRunner] = []

    def factory(
        kinds: Sequence[JobKind], *, start: bool = False, on: JobQueue | None = None, **options: object
    ) -> JobRunner:
        settings: dict[str, object] = {
            "node": f"node{len(started)}",
            "threads": 2,
            "poll_interval": 0.05,
            "lease": timedelta(seconds=3),
            "retry_base": 0.05,
        }
        settings.update(options)
        runner = JobRunner(on or queue, kinds, **settings)  # type: ignore[arg-type]
        if start:
            runner.start()
            started.append(runner)
        return runner

    yield factory
    for runner in started:
        runner.stop(timeout=10)
