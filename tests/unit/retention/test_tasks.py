"""The "retention" job kind on the real job queue and runner (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.services import JobQueue, JobRunner
from dockyard.retention.interfaces import parse_policy
from dockyard.retention.tasks import KIND, retention_kind
from tests.unit.retention.world import KEEP_LAST_3, World, five_versions

# Parametrized over SQLite and PostgreSQL by tests/unit/retention/conftest.py (or no DB at all).
pytestmark = pytest.mark.db_independent


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def runner(world: World, clock_offset: timedelta = timedelta(0)) -> JobRunner:
    kind = retention_kind(world.db, world.registry, world.immutability, clock=lambda: utcnow() + clock_offset)
    return JobRunner(JobQueue(world.db), [kind], node="test", poll_interval=0.05, schedules=False)


def test_a_dry_run_job_reports_and_a_real_one_deletes(world: World) -> None:
    five_versions(world, "team/app")
    world.policies.put("team", KEEP_LAST_3)
    jobs = runner(world)

    dry = jobs.run_job_here(jobs.queue.enqueue(KIND, {"project": "team", "dry_run": True}), timeout=60)
    assert dry.status == "succeeded", dry.error
    assert dry.result is not None
    assert (dry.result["dry_run"], dry.result["deleted"], dry.result["kept"]) == (True, 2, 3)
    lines = [line.line for line in jobs.queue.logs(dry.id)]
    assert any("team/app: would delete tag v1" in line for line in lines), lines
    assert world.tags("team/app") == ["v1", "v2", "v3", "v4", "v5"]

    real = jobs.run_job_here(jobs.queue.enqueue(KIND, {"project": "team"}), timeout=60)
    assert real.status == "succeeded", real.error
    assert world.tags("team/app") == ["v3", "v4", "v5"]
    assert [run["job_id"] for run in world.runs.list("team")] == [real.id, dry.id]


def test_a_run_on_a_missing_project_fails_the_job(world: World) -> None:
    jobs = runner(world)
    job_id = jobs.queue.enqueue(KIND, {"project": "nobody"})
    record = jobs.run_job_here(job_id, timeout=60)
    while not record.finished or record.status == "queued":  # retried with backoff: follow it
        record = jobs.run_job_here(job_id, timeout=60)
    assert record.status == "failed"
    assert "project not found" in (record.error or "")


def test_the_sweep_queues_a_run_for_each_due_schedule_once(world: World) -> None:
    five_versions(world, "team/app")
    five_versions(world, "quiet/app")
    world.policies.put(
        "team", parse_policy({"rules": [{"action": "latestPushedK", "count": 3}], "schedule": "@daily"})
    )
    world.policies.put("quiet", parse_policy({"rules": [{"action": "latestPushedK", "count": 1}]}))

    now = runner(world)
    sweep = now.run_job_here(now.queue.enqueue(KIND, {}), timeout=60)
    assert sweep.result == {"queued": {}}  # the next midnight has not come yet

    later = runner(world, clock_offset=timedelta(days=1, minutes=1))
    sweep = later.run_job_here(later.queue.enqueue(KIND, {}), timeout=60)
    assert sweep.result is not None
    [(project, job_id)] = sweep.result["queued"].items()
    assert project == "team"
    again = later.run_job_here(later.queue.enqueue(KIND, {}), timeout=60)
    assert again.result == {"queued": {}}

    run = later.run_job_here(job_id, timeout=60)
    assert run.status == "succeeded", run.error
    assert world.tags("team/app") == ["v3", "v4", "v5"]
    assert world.tags("quiet/app") == ["v1", "v2", "v3", "v4", "v5"]  # no schedule: by hand only
