"""The `replicate` job kind.

- `{"policy": "name", "trigger": "manual"}` runs one policy (queued by the API, the CLI, the sweep
  below or a push event); its result is the run's counters, the per-artifact outcomes are in the run.
  A run with failed artifacts fails the attempt, so the queue retries it with backoff; a retry copies
  only what did not arrive.
- `{"policy": "name", "trigger": "event", "repository": "team/app", "tag": "v1"}` copies that one tag
  (the event trigger queues one per pushed tag its filters select: replication/pushes.py); with
  `"deleted": true`, deletes that tag on the destination (a tag deleted here, for policies that
  propagate deletes). A run for one pushed tag never propagates other deletes.
- `{}` (no policy) is the sweep, which the kind's own schedule queues every minute: each cron policy
  whose time has come since it last fired gets a job of its own (claimed with a compare-and-set, so
  several nodes sweeping at once queue it once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.cron import CronError, parse_cron
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.services import JobQueue
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.services import Registry
from dockyard.replication.engine import Observe
from dockyard.replication.interfaces import Policy, ReplicationError, Run, RunStatus
from dockyard.replication.services import ReplicationExecutor, ReplicationPolicies
from dockyard.storage.blobs import BlobStore

if TYPE_CHECKING:
    from dockyard.endpoints.services import EndpointService

KIND = "replicate"
SWEEP_SCHEDULE = "* * * * *"  # cron policies fire within a minute of their time
log = logging.getLogger("dockyard.replication")


class RunFailed(ReplicationError):
    """Some artifacts of a run failed: the attempt fails, and the queue retries it."""

    message = "the replication run failed"


def replicate_kind(
    db: Database,
    registry: Registry,
    blob_uploads: BlobUploads,
    blobs: BlobStore,
    endpoints: Callable[[], EndpointService],
    observe: Observe | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_finished: Callable[[Policy, Run], None] | None = None,
) -> JobKind:
    executor = ReplicationExecutor(db, registry, blob_uploads, blobs, endpoints, observe, on_finished)
    queue = JobQueue(db)

    def replicate(ctx: JobContext) -> dict[str, Any]:
        name = ctx.params.get("policy")
        if name is None:
            return sweep(executor.policies, queue, clock(), ctx)
        repository, tag = ctx.params.get("repository"), ctx.params.get("tag")
        only = (str(repository), str(tag)) if repository and tag else None
        trigger = str(ctx.params.get("trigger", "manual"))
        deleted = bool(ctx.params.get("deleted", False))
        run = executor.run(str(name), ctx, job_id=ctx.job_id, trigger=trigger, only=only, deleted=deleted)
        result = {"run_id": run.id, "policy": run.policy, **run.counters}
        if run.status is RunStatus.FAILED:
            raise RunFailed(f"run {run.id} of {name}: {run.error}")
        return result

    def warm_up() -> None:
        """A run's remote side, but for the endpoint: httpx and the upstream client, the endpoints'
        service (cryptography, for their credentials) and the TLS context of the system's CAs. Only on
        a node that has a policy: one that never replicates keeps its job runner ~15 MiB smaller."""
        if not executor.policies.all():
            return
        from dockyard.upstream.client import HttpRemoteRegistry  # noqa: F401 (loaded, not used here)
        from dockyard.upstream.interfaces import TLSOptions
        from dockyard.upstream.transport import ssl_context

        endpoints()
        ssl_context(TLSOptions())

    return JobKind(
        KIND,
        replicate,
        concurrency=2,
        timeout=timedelta(hours=12),
        default_schedule=SWEEP_SCHEDULE,
        warm_up=warm_up,
    )


def sweep(policies: ReplicationPolicies, queue: JobQueue, now: datetime, ctx: JobContext) -> dict[str, Any]:
    """Queue a run of every cron policy that is due; their job ids by policy."""
    queued: dict[str, int] = {}
    for name, cron, last in policies.scheduled():
        try:
            due = parse_cron(cron).next_after(last) <= now
        except CronError as exc:  # validated when set; only a hand-edited row gets here
            ctx.log(f"{name}: schedule {cron!r} skipped: {exc}")
            continue
        if due and policies.claim_schedule(name, last, now):
            queued[name] = queue.enqueue(KIND, {"policy": name, "trigger": "cron"})
            ctx.log(f"{name}: scheduled run queued as job {queued[name]}")
    return {"queued": queued}
