"""Policies and run records against the database (SQLite, and PostgreSQL in its pass)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import insert

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.endpoints.interfaces import EndpointNotFound
from dockyard.endpoints.models import EndpointRow
from dockyard.replication.interfaces import (
    ArtifactResult,
    ArtifactStatus,
    Counters,
    Direction,
    Policy,
    PolicyExists,
    RunStatus,
    Trigger,
)
from dockyard.replication.pending import PolicyPendingUploads
from dockyard.replication.runlog import FLUSH_SECONDS, ArtifactLog
from dockyard.replication.services import UNSET, ReplicationPolicies, ReplicationRuns


@pytest.fixture
def policies(database: Database) -> ReplicationPolicies:
    now = utcnow()
    with database.write() as connection:
        connection.execute(
            insert(EndpointRow).values(
                name="dr", url="https://dr.example", kind="registry", auth_kind="none", verify_tls=True,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
    return ReplicationPolicies(database)


def test_policies_are_stored_changed_and_deleted(policies: ReplicationPolicies) -> None:
    created = policies.create(Policy("to-dr", Direction.PUSH, "dr", tags="v*", dest_namespace="copy"))
    assert (created.tags, created.dest_namespace, created.override) == ("v*", "copy", True)
    with pytest.raises(PolicyExists):
        policies.create(Policy("to-dr", Direction.PUSH, "dr"))
    with pytest.raises(EndpointNotFound):
        policies.create(Policy("other", Direction.PUSH, "nowhere"))
    changed = policies.update(
        "to-dr", trigger=Trigger.CRON, schedule="@every 1h", dest_namespace=None, tags=UNSET
    )
    assert (changed.trigger, changed.schedule, changed.dest_namespace, changed.tags) == (
        Trigger.CRON, "@every 1h", None, "v*",
    )  # fmt: skip
    assert [name for name, _, _ in policies.scheduled()] == ["to-dr"]
    policies.update("to-dr", enabled=False)
    assert policies.scheduled() == []
    policies.delete("to-dr")
    assert policies.all() == []


def test_a_run_interrupted_midway_is_marked_when_its_job_runs_again(
    policies: ReplicationPolicies, database: Database
) -> None:
    policies.create(Policy("to-dr", Direction.PUSH, "dr"))
    runs = ReplicationRuns(database)
    first = runs.start("to-dr", job_id=7, trigger="manual")
    counters = Counters(artifacts_copied=1, blobs_copied=2, bytes_copied=300)
    copied = ArtifactResult("a:1", "a:1", "sha256:" + "0" * 64, ArtifactStatus.COPIED, 2, 300)
    runs.record(first, [(copied, utcnow())], counters)
    second = runs.start("to-dr", job_id=7, trigger="manual")  # the worker died; the job's next attempt
    interrupted = runs.get(first)
    assert interrupted.status is RunStatus.FAILED and "interrupted" in (interrupted.error or "")
    assert interrupted.counters["bytes_copied"] == 300 and interrupted.artifacts[0]["status"] == "copied"
    assert runs.get(second).status is RunStatus.RUNNING
    runs.finish(second, RunStatus.SUCCEEDED, Counters(artifacts_skipped=1))
    listed, total = runs.page("to-dr", job_id=7)
    assert total == 2 and [run.id for run in listed] == [second, first]


def test_pending_uploads_are_read_once_per_run_and_kept_for_the_next(
    policies: ReplicationPolicies, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies.create(Policy("to-dr", Direction.PUSH, "dr"))
    earlier = PolicyPendingUploads(database, "to-dr")
    earlier.put("team/app", "sha256:" + "a" * 64, "https://dr.example/upload/1")
    run = PolicyPendingUploads(database, "to-dr")  # the next run
    reads = []
    read = database.read
    monkeypatch.setattr(database, "read", lambda: reads.append(1) or read())
    assert run.get("team/app", "sha256:" + "a" * 64) == "https://dr.example/upload/1"
    assert run.get("team/app", "sha256:" + "b" * 64) is None
    assert len(reads) == 1  # one read for the run, not one per blob
    run.put("team/app", "sha256:" + "b" * 64, "https://dr.example/upload/2")
    run.drop("team/app", "sha256:" + "a" * 64)
    assert run.get("team/app", "sha256:" + "b" * 64) == "https://dr.example/upload/2"  # its own changes
    assert run.get("team/app", "sha256:" + "a" * 64) is None
    after = PolicyPendingUploads(database, "to-dr")  # and the run after it finds them on the row
    assert after.get("team/app", "sha256:" + "b" * 64) == "https://dr.example/upload/2"
    assert after.get("team/app", "sha256:" + "a" * 64) is None


def test_a_runs_artifact_lines_are_written_a_second_apart_in_one_transaction_each() -> None:
    """ArtifactLog: the outcomes of a second go in one write (with the counters after the last), the
    rest with the run's end (`take`), not a transaction per artifact."""
    now = [0.0]
    writes: list[tuple[list[str], int]] = []
    def write(done: list[tuple[ArtifactResult, datetime]], counters: Counters) -> None:
        writes.append(([result.source for result, _ in done], counters.artifacts_copied))

    log = ArtifactLog(write, clock=lambda: now[0])
    for n in range(1, 4):
        log.add(ArtifactResult(f"a:{n}", f"a:{n}", None, ArtifactStatus.COPIED), Counters(artifacts_copied=n))
    assert writes == []
    now[0] = FLUSH_SECONDS
    log.add(ArtifactResult("a:4", "a:4", None, ArtifactStatus.COPIED), Counters(artifacts_copied=4))
    assert writes == [(["a:1", "a:2", "a:3", "a:4"], 4)]
    log.add(ArtifactResult("a:5", "a:5", None, ArtifactStatus.SKIPPED), Counters(artifacts_copied=4))
    assert [result.source for result, _ in log.take()] == ["a:5"] and log.take() == []
    assert len(writes) == 1


def test_the_replicate_kind_warms_up_the_remote_side_before_its_first_run(
    database: Database, policies: ReplicationPolicies
) -> None:
    """Its warm-up (run by the job runner a while after it starts) builds the endpoints' service and
    loads the upstream client, which a run's remote side needs: the first run does not pay for them.
    Not on a node without a policy, which never replicates: its job runner stays small."""
    import sys

    from dockyard.replication.tasks import replicate_kind

    built: list[bool] = []
    kind = replicate_kind(database, None, None, None, lambda: built.append(True))  # type: ignore[arg-type]
    assert kind.warm_up is not None
    kind.warm_up()
    assert built == []
    policies.create(Policy("to-dr", Direction.PUSH, "dr"))
    kind.warm_up()
    assert built == [True] and "dockyard.upstream.client" in sys.modules
