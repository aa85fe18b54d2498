"""The "gc" job through the real queue and runner: params become options, the result is the report."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from dockyard.gc.tasks import gc_kind
from dockyard.jobs.services import JobQueue, JobRunner
from dockyard.observability.metrics import GCMetrics
from tests.unit.gc.fixtures import Env

# Each test runs on SQLite and on PostgreSQL itself (tests/unit/gc/conftest.py's `db`).
pytestmark = pytest.mark.db_independent


def test_a_gc_job_runs_here_and_reports(env: Env) -> None:
    env.push_image("team/app", "v1", [b"kept"])
    orphan = env.push_blob("team/app", b"orphan")["digest"]
    metrics = GCMetrics(CollectorRegistry())
    kind = gc_kind(env.db, env.driver, env.feed, metrics)
    queue = JobQueue(env.db, known_kinds=[kind.name])
    runner = JobRunner(queue, [kind], node="test", schedules=False)

    dry = runner.run_job_here(queue.enqueue("gc", {"dry_run": True, "min_age": "0s"}))
    assert dry.status == "succeeded", dry.error
    assert dry.result is not None and dry.result["blobs"] == [orphan] and dry.result["dry_run"] is True
    assert orphan in env.stored_digests()

    real = runner.run_job_here(queue.enqueue("gc", {"min_age": "0s"}))
    assert real.status == "succeeded", real.error
    assert real.result is not None and real.result["blobs_deleted"] == 1
    assert real.result["bytes_freed"] == len(b"orphan")
    assert real.progress_done == real.progress_total == 1
    assert orphan not in env.stored_digests()
    assert metrics.registry.get_sample_value("gc_runs_total", {"dry_run": "false"}) == 1.0
    assert metrics.registry.get_sample_value("gc_bytes_freed_total") == len(b"orphan")


def test_bad_params_fail_the_job_with_a_clear_error(env: Env) -> None:
    kind = gc_kind(env.db, env.driver, env.feed)
    queue = JobQueue(env.db, known_kinds=[kind.name])
    runner = JobRunner(queue, [kind], node="test", schedules=False, retry_base=0.0)
    record = runner.run_job_here(queue.enqueue("gc", {"min_age": "soon"}), timeout=60)
    assert record.status == "failed"
    assert record.error is not None and "min_age" in record.error
