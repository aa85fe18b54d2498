"""Retention against the database: policies, run history, and carrying out a run.

The choice of what to keep is `engine.plan_repository` (pure). This module reads each repository's
artifacts, asks the engine, and deletes through the registry service (`Registry.delete_batch`, up to
DELETE_BATCH per transaction), so caches, the change feed, quota usage and tag immutability apply as
for a client's DELETE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, delete, insert, select, update

from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditRecorder, ResourceType
from dockyard.db.base import utcnow
from dockyard.db.dialect import upsert
from dockyard.db.session import Database
from dockyard.errors import DeleteDisabled, ReadOnly
from dockyard.projects.immutability import ImmutabilityRules
from dockyard.projects.models import ProjectRow
from dockyard.projects.services import project_id
from dockyard.registry.batch_deletes import BatchOutcome, DeleteRequest, DeleteResult
from dockyard.registry.models import Manifest, ManifestReference, Repository, Tag
from dockyard.registry.services import Registry
from dockyard.retention.engine import Artifact, plan_repository
from dockyard.retention.interfaces import (
    Decision,
    Outcome,
    Policy,
    RepositoryReport,
    RetentionPolicyNotFound,
    RunReport,
)
from dockyard.retention.models import RetentionPolicyRow, RetentionRunRow

log = logging.getLogger("dockyard.retention")
MAX_RUNS_LISTED = 100
DELETE_BATCH = 500  # deletes per transaction: few commits, yet no lock held for long


class Progress(Protocol):
    """What a run reports to (a job's context is one)."""

    def log(self, line: str) -> None: ...

    def progress(self, done: int, total: int | None = None) -> None: ...

    def check_cancelled(self) -> None: ...


class LoggedProgress:
    """Progress to the log, for runs outside a job."""

    def log(self, line: str) -> None:
        log.info("%s", line)

    def progress(self, done: int, total: int | None = None) -> None:
        pass

    def check_cancelled(self) -> None:
        pass


# --- policies -------------------------------------------------------------------------------------
class RetentionPolicies:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, project: str) -> Policy:
        """ProjectNotFound, or RetentionPolicyNotFound when the project has none."""
        with self._db.read() as connection:
            owner = project_id(connection, project)
            row = connection.execute(
                select(RetentionPolicyRow.rules, RetentionPolicyRow.schedule).where(
                    RetentionPolicyRow.project_id == owner
                )
            ).first()
        if row is None:
            raise _no_policy(project)
        return Policy.model_validate({"rules": row.rules, "schedule": row.schedule})

    def find(self, project: str) -> Policy | None:
        try:
            return self.get(project)
        except RetentionPolicyNotFound:
            return None

    def put(self, project: str, policy: Policy) -> Policy:
        document = policy.model_dump(mode="json")
        now = utcnow()
        with self._db.write() as connection:
            owner = project_id(connection, project)
            upsert(
                connection,
                RetentionPolicyRow,
                # A schedule counts from now: a changed cron never fires for times already past.
                {
                    "project_id": owner,
                    "rules": document["rules"],
                    "schedule": policy.schedule,
                    "scheduled_at": now,
                    "updated_at": now,
                },
                key=["project_id"],
                update=["rules", "schedule", "scheduled_at", "updated_at"],
            )
        return policy

    def delete(self, project: str) -> None:
        with self._db.write() as connection:
            owner = project_id(connection, project)
            result = connection.execute(
                delete(RetentionPolicyRow).where(RetentionPolicyRow.project_id == owner)
            )
        if result.rowcount == 0:
            raise _no_policy(project)

    def scheduled(self) -> list[tuple[str, str, datetime]]:
        """(project, cron, last fired or set) of every policy with a schedule."""
        with self._db.read() as connection:
            rows = connection.execute(
                select(ProjectRow.name, RetentionPolicyRow.schedule, RetentionPolicyRow.scheduled_at)
                .join(ProjectRow, ProjectRow.id == RetentionPolicyRow.project_id)
                .where(RetentionPolicyRow.schedule.is_not(None), RetentionPolicyRow.scheduled_at.is_not(None))
                .order_by(ProjectRow.name)
            ).all()
        return [(row.name, row.schedule, row.scheduled_at) for row in rows]

    def claim_schedule(self, project: str, last: datetime, now: datetime) -> bool:
        """Move the policy's last firing from `last` to `now`; False when another node did first."""
        with self._db.write() as connection:
            owner = project_id(connection, project)
            result = connection.execute(
                update(RetentionPolicyRow)
                .where(RetentionPolicyRow.project_id == owner, RetentionPolicyRow.scheduled_at == last)
                .values(scheduled_at=now)
            )
        return result.rowcount == 1


# --- run history ----------------------------------------------------------------------------------
class RetentionRuns:
    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self, project: str, dry_run: bool, job_id: int | None) -> int:
        with self._db.write() as connection:
            owner = project_id(connection, project)
            row = insert(RetentionRunRow).values(
                project_id=owner, job_id=job_id, dry_run=dry_run, status="running", started_at=utcnow()
            )
            return int(connection.execute(row).inserted_primary_key[0])  # type: ignore[index]

    def finish(self, run_id: int, report: RunReport) -> None:
        self._end(run_id, status="succeeded", summary=report.summary(), report=report.as_dict())

    def fail(self, run_id: int, error: str) -> None:
        self._end(run_id, status="failed", error=error[:2000])

    def list(self, project: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs, newest first, without their reports."""
        limit = max(1, min(limit, MAX_RUNS_LISTED))
        with self._db.read() as connection:
            owner = project_id(connection, project)
            rows = connection.execute(
                select(RetentionRunRow.__table__)
                .where(RetentionRunRow.project_id == owner)
                .order_by(RetentionRunRow.id.desc())
                .limit(limit)
            ).all()
            return [_run(row, with_report=False) for row in rows]

    def get(self, project: str, run_id: int) -> dict[str, Any] | None:
        with self._db.read() as connection:
            owner = project_id(connection, project)
            row = connection.execute(
                select(RetentionRunRow.__table__).where(
                    RetentionRunRow.project_id == owner, RetentionRunRow.id == run_id
                )
            ).first()
            return None if row is None else _run(row, with_report=True)

    def _end(self, run_id: int, **values: Any) -> None:
        with self._db.write() as connection:
            connection.execute(
                update(RetentionRunRow)
                .where(RetentionRunRow.id == run_id)
                .values(finished_at=utcnow(), **values)
            )


def _run(row: Any, with_report: bool) -> dict[str, Any]:
    run = {
        "id": row.id,
        "job_id": row.job_id,
        "dry_run": row.dry_run,
        "status": row.status,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "summary": row.summary,
        "error": row.error,
    }
    if with_report:
        run["report"] = row.report
    return run


# --- carrying out a run ---------------------------------------------------------------------------
class RetentionExecutor:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        immutability: ImmutabilityRules,
        policies: RetentionPolicies,
        runs: RetentionRuns,
        clock: Callable[[], datetime] = utcnow,
        audit: AuditRecorder | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self._immutability = immutability  # a dry run shows what the registry would refuse
        self._policies = policies
        self._runs = runs
        self._clock = clock
        self._audit = audit

    def run(
        self, project: str, *, dry_run: bool, job_id: int | None = None, progress: Progress | None = None
    ) -> RunReport:
        """Evaluate the project's policy and (unless dry_run) delete the tags it does not keep.
        Recorded in the run history either way; a project without a policy deletes nothing."""
        progress = progress or LoggedProgress()
        policy = self._policies.find(project) or Policy()
        run_id = self._runs.start(project, dry_run, job_id)
        try:
            if not dry_run:  # deletes off or read-only: fail before any change
                self._check_deletable()
            report = self._evaluate(project, policy, dry_run, progress)
        except BaseException as exc:
            self._runs.fail(run_id, f"{type(exc).__name__}: {exc}")
            raise
        report.run_id = run_id
        self._runs.finish(run_id, report)
        return report

    def _check_deletable(self) -> None:
        if self._registry.read_only:
            raise ReadOnly()
        if not self._registry.delete_enabled:
            raise DeleteDisabled()

    def _evaluate(self, project: str, policy: Policy, dry_run: bool, progress: Progress) -> RunReport:
        now = self._clock()
        report = RunReport(project, dry_run, now)
        repositories = self._repositories(project)
        verb = "would delete" if dry_run else "deleted"
        progress.log(f"{'dry run' if dry_run else 'run'} of {len(policy.active_rules)} rules on {project}")
        for done, (repository_id, name) in enumerate(repositories):
            progress.check_cancelled()
            with self._db.read() as connection:
                artifacts = load_artifacts(connection, repository_id)
            decisions = plan_repository(policy, path_in_project(name), artifacts, now)
            if decisions is not None:
                if dry_run:
                    decisions = [self._foresee(name, d) for d in decisions]
                else:
                    decisions = self._carry_out(name, decisions, progress)
                for decision in decisions:
                    if decision.outcome is not Outcome.KEPT:
                        what = f"tag {decision.tag}" if decision.tag else "untagged"
                        outcome = verb if decision.outcome is Outcome.DELETED else decision.outcome.value
                        progress.log(f"{name}: {outcome} {what} ({decision.digest}): {decision.reason}")
                report.repositories.append(RepositoryReport(name, decisions))
            else:
                report.out_of_scope.append(name)
            progress.progress(done + 1, len(repositories))
        progress.log(
            f"kept {report.count(Outcome.KEPT)}, {verb} {report.count(Outcome.DELETED)}, "
            f"kept (immutable) {report.count(Outcome.KEPT_IMMUTABLE)}, "
            f"skipped {report.count(Outcome.SKIPPED)}"
        )
        return report

    def _repositories(self, project: str) -> list[tuple[int, str]]:
        with self._db.read() as connection:
            owner = project_id(connection, project)
            rows = connection.execute(
                select(Repository.id, Repository.name)
                .where(Repository.project_id == owner)
                .order_by(Repository.name)
            ).all()
        return [(row.id, row.name) for row in rows]

    def _foresee(self, name: str, decision: Decision) -> Decision:
        """A dry run's decision: what the registry would refuse (immutable tags) is shown as kept."""
        if decision.outcome is Outcome.DELETED and decision.tag is not None:
            rule = self._immutability.rule_for(name, decision.tag)
            if rule is not None:
                return _with(decision, Outcome.KEPT_IMMUTABLE, f"immutable (rule {rule.id})")
        return decision

    def _carry_out(self, name: str, decisions: list[Decision], progress: Progress) -> list[Decision]:
        """Delete what `decisions` say, DELETE_BATCH at a time in one transaction each; the outcomes."""
        carried = list(decisions)
        doomed = [index for index, decision in enumerate(decisions) if decision.outcome is Outcome.DELETED]
        for start in range(0, len(doomed), DELETE_BATCH):
            progress.check_cancelled()
            batch = doomed[start : start + DELETE_BATCH]
            # The plan was read a moment ago: the registry deletes only what is still as planned.
            requests = [DeleteRequest(decisions[i].tag, decisions[i].digest) for i in batch]
            for index, result in zip(batch, self._registry.delete_batch(name, requests), strict=True):
                carried[index] = self._outcome(name, decisions[index], result)
        return carried

    def _outcome(self, name: str, decision: Decision, result: DeleteResult) -> Decision:
        if result.outcome is BatchOutcome.IMMUTABLE:
            return _with(decision, Outcome.KEPT_IMMUTABLE, result.detail)
        if result.outcome is BatchOutcome.CHANGED:
            return _with(decision, Outcome.SKIPPED, "changed since it was evaluated")
        if result.outcome is BatchOutcome.GONE:
            return _with(decision, Outcome.SKIPPED, "already gone")
        if self._audit is not None:
            reference = f"{name}:{decision.tag}" if decision.tag else f"{name}@{decision.digest}"
            detail = {"by": "retention", "digest": decision.digest, "reason": decision.reason}
            self._audit.record(
                AuditEvent(
                    AuditAction.DELETE,
                    "retention",
                    ActorKind.SYSTEM,
                    resource_type=ResourceType.ARTIFACT,
                    resource_name=reference,
                    detail=detail,
                )
            )
        return decision


def _with(decision: Decision, outcome: Outcome, reason: str) -> Decision:
    return Decision(decision.tag, decision.digest, outcome, reason)


def path_in_project(repository: str) -> str:
    """What repository selectors match: the name inside its project (`team/app/api` -> `app/api`)."""
    return repository.split("/", 1)[1] if "/" in repository else ""


def load_artifacts(connection: Connection, repository_id: int) -> list[Artifact]:
    """Every manifest of the repository with its tags, push and pull times."""
    manifests = connection.execute(
        select(
            Manifest.id,
            Manifest.digest,
            Manifest.created_at,
            Manifest.last_pulled_at,
            Manifest.subject_digest,
        ).where(Manifest.repository_id == repository_id)
    ).all()
    tags: dict[int, list[tuple[str, datetime]]] = {}
    for tag in connection.execute(
        select(Tag.manifest_id, Tag.name, Tag.updated_at).where(Tag.repository_id == repository_id)
    ):
        tags.setdefault(tag.manifest_id, []).append((tag.name, tag.updated_at))
    children = set(
        connection.scalars(
            select(ManifestReference.digest)
            .join(Manifest, Manifest.id == ManifestReference.manifest_id)
            .where(Manifest.repository_id == repository_id, ManifestReference.kind == "manifest")
        )
    )
    artifacts = []
    for row in manifests:
        own_tags = tags.get(row.id, [])
        # A tag moved onto an older manifest makes it "pushed" again, as a re-push does in Harbor.
        pushed_at = max([row.created_at, *(moved for _, moved in own_tags)])
        artifacts.append(
            Artifact(
                id=row.id,
                digest=row.digest,
                tags=tuple(name for name, _ in own_tags),
                pushed_at=pushed_at,
                pulled_at=row.last_pulled_at,
                dependent=row.subject_digest is not None or row.digest in children,
            )
        )
    return artifacts


def _no_policy(project: str) -> RetentionPolicyNotFound:
    return RetentionPolicyNotFound(
        f"project {project!r} has no retention policy", detail={"project": project}
    )
