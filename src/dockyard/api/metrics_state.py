"""Gauges a scrape reads from the metadata database: open upload sessions, stored blobs, the last
garbage collection. Like the quota gauges, every worker and node answers the same, and the request path
pays nothing for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dockyard.db.session import Database
from dockyard.jobs.models import JobRow
from dockyard.storage.models import Blob, Upload

# SUM over every blob is a scan: at most once a minute, whatever the scrape interval and worker count.
BLOB_TOTALS_TTL_SECONDS = 60.0
GC_KIND = "gc"
GC_JOBS_LOOKED_AT = 50  # recent successful gc jobs searched for one that was not a dry run


class RegistryStateCollector(Collector):
    """`dockyard_upload_sessions_open`, `dockyard_upload_sessions_bytes`, `dockyard_storage_blobs`,
    `dockyard_storage_blobs_bytes` and `dockyard_gc_last_success_timestamp_seconds`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._blob_totals: tuple[float, int, int] | None = None  # (when, count, bytes)

    def collect(self) -> Iterable[Metric]:
        with self.db.read() as connection:
            sessions, session_bytes = connection.execute(
                select(func.count(), func.coalesce(func.sum(Upload.size), 0))
            ).one()
            gc_runs = connection.execute(
                select(JobRow.finished_at, JobRow.params)
                .where(JobRow.kind == GC_KIND, JobRow.status == "succeeded")
                .order_by(JobRow.finished_at.desc())
                .limit(GC_JOBS_LOOKED_AT)
            ).all()
            first_blob = None
            if not any(not (params or {}).get("dry_run") for _, params in gc_runs):
                first_blob = connection.execute(select(func.min(Blob.created_at))).scalar()
        yield GaugeMetricFamily(
            "dockyard_upload_sessions_open",
            "Blob upload sessions started and not yet committed or cancelled.",
            value=float(sessions),
        )
        yield GaugeMetricFamily(
            "dockyard_upload_sessions_bytes",
            "Bytes received so far by the open upload sessions.",
            value=float(session_bytes),
        )
        count, size = self._blob_totals_cached()
        yield GaugeMetricFamily(
            "dockyard_storage_blobs", "Blobs stored (each digest once).", value=float(count)
        )
        yield GaugeMetricFamily(
            "dockyard_storage_blobs_bytes",
            "Bytes of the blobs stored, each digest once however many projects use it "
            "(refreshed every minute).",
            value=float(size),
        )
        last = _last_real_run(gc_runs) or first_blob
        family = GaugeMetricFamily(
            "dockyard_gc_last_success_timestamp_seconds",
            "When the last garbage collection that was not a dry run succeeded; before the first, when the "
            "oldest blob stored was written (no sample with no blobs and no run).",
        )
        if last is not None:
            family.add_metric([], last.timestamp())
        yield family

    def exposition(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)

    def _blob_totals_cached(self) -> tuple[int, int]:
        with self._lock:
            cached = self._blob_totals
            if cached is not None and time.monotonic() - cached[0] < BLOB_TOTALS_TTL_SECONDS:
                return cached[1], cached[2]
            with self.db.read() as connection:
                count, size = connection.execute(
                    select(func.count(), func.coalesce(func.sum(Blob.size), 0))
                ).one()
            self._blob_totals = (time.monotonic(), int(count), int(size))
            return int(count), int(size)


def _last_real_run(runs: Iterable[tuple[datetime | None, dict[str, object] | None]]) -> datetime | None:
    for finished_at, params in runs:
        if finished_at is not None and not (params or {}).get("dry_run"):
            return finished_at
    return None
