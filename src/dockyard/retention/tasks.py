"""The "retention" job kind.

- `{"project": "team", "dry_run": true}` evaluates one project's policy (queued by the API or by the
  sweep below); its result is the run's summary, the full report is in the run history.
- `{}` (no project) is the sweep, which the kind's own schedule queues every few minutes: the job
  queue has one schedule per kind, so each project's `schedule` (a cron) is fired from here. A policy
  whose cron time has come since it last fired gets a job of its own (claimed with a compare-and-set,
  so several nodes sweeping at once queue it once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from dockyard.audit.interfaces import AuditRecorder
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.cron import CronError, parse_cron
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.queue import JobQueue
from dockyard.projects.immutability import ImmutabilityRules
from dockyard.registry.services import Registry
from dockyard.retention.interfaces import KIND
from dockyard.retention.services import RetentionExecutor, RetentionPolicies, RetentionRuns

SWEEP_SCHEDULE = "*/5 * * * *"  # how often per-project schedules are looked at: they fire within 5 minutes
log = logging.getLogger("dockyard.retention")


def retention_kind(
    db: Database,
    registry: Registry,
    immutability: ImmutabilityRules,
    audit: AuditRecorder | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_finished: Callable[[str, dict[str, Any]], None] | None = None,
) -> JobKind:
    """Deleted tags go to `audit` as deletes by the system actor "retention"; `on_finished` gets each
    finished run's project and summary (webhook policies' retention events)."""
    policies = RetentionPolicies(db)
    executor = RetentionExecutor(db, registry, immutability, policies, RetentionRuns(db), audit=audit)
    queue = JobQueue(db)

    def retention(ctx: JobContext) -> dict[str, Any]:
        project = ctx.params.get("project")
        if project is None:
            return sweep(policies, queue, clock(), ctx)
        report = executor.run(
            str(project), dry_run=bool(ctx.params.get("dry_run", False)), job_id=ctx.job_id, progress=ctx
        )
        summary = report.summary()
        if on_finished is not None:
            try:
                on_finished(str(project), summary)
            except Exception:  # the run is done and recorded; a lost event must not fail it
                log.warning("could not record the retention run of %s for webhooks", project, exc_info=True)
        return summary

    return JobKind(
        KIND, retention, concurrency=1, timeout=timedelta(hours=6), default_schedule=SWEEP_SCHEDULE
    )


def sweep(policies: RetentionPolicies, queue: JobQueue, now: datetime, ctx: JobContext) -> dict[str, Any]:
    """Queue a run for every project whose policy schedule is due; their job ids by project."""
    queued: dict[str, int] = {}
    for project, cron, last in policies.scheduled():
        try:
            due = parse_cron(cron).next_after(last) <= now
        except CronError as exc:  # validated when set; only a hand-edited row gets here
            ctx.log(f"{project}: schedule {cron!r} skipped: {exc}")
            continue
        if due and policies.claim_schedule(project, last, now):
            queued[project] = queue.enqueue(KIND, {"project": project, "dry_run": False, "scheduled": True})
            ctx.log(f"{project}: scheduled run queued as job {queued[project]}")
    return {"queued": queued}
