"""Replication against the database: policies (stored, changed), runs (their records, per-artifact
outcomes and counters), and carrying out a run (`ReplicationExecutor`: the sides of the policy's
direction, the copy engine, the run's record)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.endpoints.interfaces import EndpointNotFound
from dockyard.endpoints.models import EndpointRow
from dockyard.jobs.interfaces import JobCancelled
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.services import Registry
from dockyard.replication.engine import Observe, Progress, Replicator
from dockyard.replication.interfaces import (
    Counters,
    Direction,
    Policy,
    PolicyExists,
    PolicyNotFound,
    Run,
    RunNotFound,
    RunStatus,
    Trigger,
    check_policy,
)
from dockyard.replication.models import ReplicationArtifactRow, ReplicationPolicyRow, ReplicationRunRow
from dockyard.replication.pending import PolicyPendingUploads
from dockyard.replication.runlog import ArtifactLog, Finished, insert_artifacts
from dockyard.replication.sides import LocalSide, RemoteSide
from dockyard.storage.blobs import BlobStore

if TYPE_CHECKING:
    from dockyard.endpoints.services import EndpointService

log = logging.getLogger("dockyard.replication")
UNSET: Any = object()
MAX_RUNS_LISTED = 100
COUNTER_COLUMNS = tuple(Counters().as_dict())


# --- policies -------------------------------------------------------------------------------------
class ReplicationPolicies:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[Policy]:
        with self._db.read() as connection:
            rows = connection.execute(_policy_query().order_by(ReplicationPolicyRow.name)).all()
        return [_policy(row) for row in rows]

    def get(self, name: str) -> Policy:
        with self._db.read() as connection:
            row = connection.execute(_policy_query().where(ReplicationPolicyRow.name == name)).first()
        if row is None:
            raise PolicyNotFound(f"no replication policy named {name!r}")
        return _policy(row)

    def create(self, policy: Policy) -> Policy:
        check_policy(policy)
        now = utcnow()
        try:
            with self._db.write() as connection:
                values = _columns(connection, policy)
                connection.execute(
                    insert(ReplicationPolicyRow).values(
                        **values, name=policy.name, scheduled_at=now, created_at=now, updated_at=now
                    )
                )
        except IntegrityError:
            raise PolicyExists(f"a replication policy named {policy.name!r} exists") from None
        return self.get(policy.name)

    def update(self, name: str, **changes: Any) -> Policy:
        """Change the fields given (Policy's names); the name cannot change."""
        current = self.get(name)
        changed = replace(current, **{key: value for key, value in changes.items() if value is not UNSET})
        check_policy(changed)
        now = utcnow()
        with self._db.write() as connection:
            values = _columns(connection, changed)
            if changed.schedule != current.schedule or changed.trigger != current.trigger:
                values["scheduled_at"] = now  # a new schedule counts from now
            connection.execute(
                update(ReplicationPolicyRow)
                .where(ReplicationPolicyRow.name == name)
                .values(**values, updated_at=now)
            )
        return self.get(name)

    def delete(self, name: str) -> None:
        """The policy and its run history."""
        with self._db.write() as connection:
            deleted = connection.execute(
                delete(ReplicationPolicyRow).where(ReplicationPolicyRow.name == name)
            ).rowcount
        if not deleted:
            raise PolicyNotFound(f"no replication policy named {name!r}")

    # --- triggers --------------------------------------------------------------------------------
    def scheduled(self) -> list[tuple[str, str, datetime]]:
        """(name, cron, when it last fired) of every enabled cron policy."""
        query = select(
            ReplicationPolicyRow.name,
            ReplicationPolicyRow.schedule,
            ReplicationPolicyRow.scheduled_at,
            ReplicationPolicyRow.created_at,
        ).where(
            ReplicationPolicyRow.enabled.is_(True),
            ReplicationPolicyRow.trigger == Trigger.CRON.value,
            ReplicationPolicyRow.schedule.is_not(None),
        )
        with self._db.read() as connection:
            rows = connection.execute(query).all()
        return [(row.name, row.schedule, row.scheduled_at or row.created_at) for row in rows]

    def claim_schedule(self, name: str, last: datetime, now: datetime) -> bool:
        """Move the policy's `scheduled_at` from `last` to `now`; only one of several sweeps wins."""
        with self._db.write() as connection:
            moved = connection.execute(
                update(ReplicationPolicyRow)
                .where(
                    ReplicationPolicyRow.name == name,
                    or_(
                        ReplicationPolicyRow.scheduled_at == last, ReplicationPolicyRow.scheduled_at.is_(None)
                    ),
                )
                .values(scheduled_at=now)
            ).rowcount
        return moved == 1

    def on_push(self) -> list[Policy]:
        """The enabled push policies with the event trigger."""
        query = _policy_query().where(
            ReplicationPolicyRow.enabled.is_(True),
            ReplicationPolicyRow.trigger == Trigger.EVENT.value,
            ReplicationPolicyRow.direction == Direction.PUSH.value,
        )
        with self._db.read() as connection:
            return [_policy(row) for row in connection.execute(query).all()]


def _policy_query() -> Any:
    return select(ReplicationPolicyRow.__table__, EndpointRow.name.label("endpoint_name")).join(
        EndpointRow, EndpointRow.id == ReplicationPolicyRow.endpoint_id
    )


def _columns(connection: Any, policy: Policy) -> dict[str, Any]:
    endpoint_id = connection.scalar(select(EndpointRow.id).where(EndpointRow.name == policy.endpoint))
    if endpoint_id is None:
        raise EndpointNotFound(f"no registry endpoint named {policy.endpoint!r}")
    return {
        "description": policy.description,
        "direction": policy.direction.value,
        "endpoint_id": endpoint_id,
        "repositories": policy.repositories,
        "tags": policy.tags,
        "dest_namespace": policy.dest_namespace or None,
        "trigger": policy.trigger.value,
        "schedule": policy.schedule,
        "override": policy.override,
        "propagate_deletes": policy.propagate_deletes,
        "enabled": policy.enabled,
        "concurrency": policy.concurrency,
        "bandwidth": policy.bandwidth,
        "artifact_types": json.dumps(list(policy.artifact_types)) if policy.artifact_types else None,
        "labels": json.dumps(list(policy.labels)) if policy.labels else None,
    }


def _policy(row: Row[Any]) -> Policy:
    return Policy(
        name=row.name,
        direction=Direction(row.direction),
        endpoint=row.endpoint_name,
        repositories=row.repositories,
        tags=row.tags,
        dest_namespace=row.dest_namespace,
        trigger=Trigger(row.trigger),
        schedule=row.schedule,
        override=row.override,
        propagate_deletes=row.propagate_deletes,
        enabled=row.enabled,
        description=row.description or "",
        concurrency=row.concurrency,
        bandwidth=row.bandwidth,
        artifact_types=_list(row.artifact_types),
        labels=_list(row.labels),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _list(text: str | None) -> tuple[str, ...]:
    return tuple(str(item) for item in json.loads(text)) if text else ()


# --- runs -----------------------------------------------------------------------------------------
class ReplicationRuns:
    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self, policy: str, job_id: int | None, trigger: str) -> int:
        """A new run's record. An earlier run of the same job still `running` was interrupted (its
        worker killed or its lease lost): it is marked failed, and this attempt carries on from what
        arrived."""
        now = utcnow()
        with self._db.write() as connection:
            policy_id = connection.scalar(
                select(ReplicationPolicyRow.id).where(ReplicationPolicyRow.name == policy)
            )
            if policy_id is None:
                raise PolicyNotFound(f"no replication policy named {policy!r}")
            if job_id is not None:
                connection.execute(
                    update(ReplicationRunRow)
                    .where(
                        ReplicationRunRow.job_id == job_id,
                        ReplicationRunRow.status == RunStatus.RUNNING.value,
                    )
                    .values(
                        status=RunStatus.FAILED.value,
                        finished_at=now,
                        error="interrupted: its worker stopped; the job's next attempt carried on",
                    )
                )
            inserted = connection.execute(
                insert(ReplicationRunRow).values(
                    policy_id=policy_id,
                    job_id=job_id,
                    trigger=trigger,
                    status=RunStatus.RUNNING.value,
                    started_at=now,
                    **dict.fromkeys(COUNTER_COLUMNS, 0),
                )
            )
        return int(inserted.inserted_primary_key[0])  # type: ignore[index]

    def record(self, run_id: int, results: Sequence[Finished], counters: Counters) -> None:
        """Artifacts' outcomes and the run's counters so far, in one transaction."""
        with self._db.write() as connection:
            insert_artifacts(connection, run_id, results)
            connection.execute(
                update(ReplicationRunRow).where(ReplicationRunRow.id == run_id).values(**counters.as_dict())
            )

    def finish(
        self,
        run_id: int,
        status: RunStatus,
        counters: Counters,
        error: str | None = None,
        artifacts: Sequence[Finished] = (),
    ) -> None:
        """The run's end, with the outcomes of its last artifacts not yet written."""
        with self._db.write() as connection:
            insert_artifacts(connection, run_id, artifacts)
            connection.execute(
                update(ReplicationRunRow)
                .where(ReplicationRunRow.id == run_id)
                .values(status=status.value, finished_at=utcnow(), error=error, **counters.as_dict())
            )

    def page(
        self, policy: str | None = None, limit: int = 20, offset: int = 0, job_id: int | None = None
    ) -> tuple[list[Run], int]:
        query = _run_query()
        count = select(func.count()).select_from(ReplicationRunRow)
        if job_id is not None:
            query = query.where(ReplicationRunRow.job_id == job_id)
            count = count.where(ReplicationRunRow.job_id == job_id)
        if policy is not None:
            query = query.where(ReplicationPolicyRow.name == policy)
            count = count.join(
                ReplicationPolicyRow, ReplicationPolicyRow.id == ReplicationRunRow.policy_id
            ).where(ReplicationPolicyRow.name == policy)
        with self._db.read() as connection:
            rows = connection.execute(
                query.order_by(ReplicationRunRow.id.desc()).limit(limit).offset(offset)
            ).all()
            total = int(connection.scalar(count) or 0)
        return [_run(row) for row in rows], total

    def get(self, run_id: int, artifacts: bool = True) -> Run:
        with self._db.read() as connection:
            row = connection.execute(_run_query().where(ReplicationRunRow.id == run_id)).first()
            if row is None:
                raise RunNotFound(f"no replication run {run_id}")
            items: list[dict[str, Any]] = []
            if artifacts:
                found = connection.execute(
                    select(ReplicationArtifactRow.__table__)
                    .where(ReplicationArtifactRow.run_id == run_id)
                    .order_by(ReplicationArtifactRow.id)
                ).all()
                items = [
                    {
                        "source": item.source,
                        "destination": item.destination,
                        "digest": item.digest,
                        "status": item.status,
                        "blobs": item.blobs,
                        "bytes": item.bytes,
                        "error": item.error,
                        "finished_at": item.finished_at,
                    }
                    for item in found
                ]
        return replace(_run(row), artifacts=items)


def _run_query() -> Any:
    return select(ReplicationRunRow.__table__, ReplicationPolicyRow.name.label("policy_name")).join(
        ReplicationPolicyRow, ReplicationPolicyRow.id == ReplicationRunRow.policy_id
    )


def _run(row: Row[Any]) -> Run:
    return Run(
        id=row.id,
        policy=row.policy_name,
        job_id=row.job_id,
        trigger=row.trigger,
        status=RunStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        counters={column: int(getattr(row, column) or 0) for column in COUNTER_COLUMNS},
        error=row.error,
    )


# --- carrying out a run ---------------------------------------------------------------------------
class ReplicationExecutor:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        blob_uploads: BlobUploads,
        blobs: BlobStore,
        endpoints: Callable[[], EndpointService],
        observe: Observe | None = None,
        on_finished: Callable[[Policy, Run], None] | None = None,
    ) -> None:
        """`on_finished`: told of every run that ended (succeeded, failed or cancelled), with its
        artifacts (the `replication_finished` webhook event)."""
        self._db = db
        self.policies = ReplicationPolicies(db)
        self.runs = ReplicationRuns(db)
        self.local = LocalSide(registry, blob_uploads, blobs)
        self.endpoints = endpoints
        self.observe = observe
        self.on_finished = on_finished

    def run(
        self,
        name: str,
        progress: Progress,
        job_id: int | None = None,
        trigger: str = "manual",
        only: tuple[str, str] | None = None,
        deleted: bool = False,
    ) -> Run:
        """Run the policy now; its record (and the counters) as it ended. A run where some artifact
        failed is FAILED (and the job retries: what arrived is not copied again); a cancel ends it
        CANCELLED and raises JobCancelled."""
        policy = self.policies.get(name)
        run_id = self.runs.start(name, job_id, trigger)
        artifacts = ArtifactLog(lambda done, now: self.runs.record(run_id, done, now))
        counters = Counters()
        try:
            remote = RemoteSide(self.endpoints().remote(policy.endpoint))
            try:
                source, destination = (
                    (self.local, remote) if policy.direction is Direction.PUSH else (remote, self.local)
                )
                replicator = Replicator(
                    policy,
                    source,
                    destination,
                    progress,
                    artifacts.add,
                    self.observe,
                    only,
                    concurrency=policy.concurrency,
                    deleted=deleted,
                    pending=PolicyPendingUploads(self._db, policy.name),
                )
                counters = replicator.counters
                replicator.run()
            finally:
                remote.close()
                remote.remote.close()
        except JobCancelled as cancelled:
            self.runs.finish(run_id, RunStatus.CANCELLED, counters, cancelled.message, artifacts.take())
            progress.log(f"cancelled: {_said(counters)}")
            self._tell(policy, run_id)
            raise
        except Exception as error:
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            self.runs.finish(run_id, RunStatus.FAILED, counters, message, artifacts.take())
            progress.log(f"failed: {message}")
            self._tell(policy, run_id)
            raise
        if counters.artifacts_failed:
            error_text = f"{counters.artifacts_failed} artifacts failed (see the run's artifacts)"
            self.runs.finish(run_id, RunStatus.FAILED, counters, error_text, artifacts.take())
        else:
            self.runs.finish(run_id, RunStatus.SUCCEEDED, counters, artifacts=artifacts.take())
        progress.log(_said(counters))
        self._tell(policy, run_id)
        return self.runs.get(run_id, artifacts=False)

    def _tell(self, policy: Policy, run_id: int) -> None:
        if self.on_finished is None:
            return
        try:
            self.on_finished(policy, self.runs.get(run_id, artifacts=True))
        except Exception:  # a webhook event must never change how the run ended
            log.warning("replication run %d: its finished event was not recorded", run_id, exc_info=True)


def _said(counters: Counters) -> str:
    return (
        f"artifacts: {counters.artifacts_copied} copied, {counters.artifacts_skipped} skipped, "
        f"{counters.artifacts_failed} failed, {counters.artifacts_deleted} deleted; blobs: "
        f"{counters.blobs_copied} copied ({counters.bytes_copied} bytes), {counters.blobs_mounted} mounted, "
        f"{counters.blobs_skipped} already there; manifests: {counters.manifests_copied} copied"
    )
