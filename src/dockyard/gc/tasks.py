"""The "gc" job: one garbage collection run with the job's params as options (gc.interfaces.GCOptions),
reporting progress and obeying cancel between batches; its result is the report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dockyard.coordination.interfaces import ChangeFeed
from dockyard.db.session import Database
from dockyard.gc.interfaces import GCOptions
from dockyard.gc.services import GarbageCollector, GCMetrics
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.storage.driver.base import StorageDriver

KIND = "gc"


def gc_kind(
    db: Database, driver: StorageDriver, feed: ChangeFeed, metrics: GCMetrics | None = None
) -> JobKind:
    collector = GarbageCollector(db, driver, feed, metrics)

    def collect(ctx: JobContext) -> Mapping[str, Any]:
        return collector.run(GCOptions.from_params(ctx.params), ctx).as_dict()

    # One run at a time cluster-wide (two would only race each other); on demand or on the schedule
    # an administrator sets (`dockyard job schedule gc ...`). A failed run is safe to run again.
    return JobKind(KIND, collect, concurrency=1, timeout=timedelta(hours=12))
