"""Prometheus metrics that add up across the server's worker processes.

Granian runs N worker processes, each with its own counters. prometheus_client's multiprocess mode has every
process write its values to files in one directory, and a scrape adds the files up:

- the serve command calls `prepare_multiprocess(dir)` in the parent before workers start;
- each worker's app builds one `Metrics` and records into it;
- `/metrics` answers with `metrics.render()` (or `render()`), which adds up every worker's file.

Without `prepare_multiprocess` each `Metrics` keeps its own CollectorRegistry, so tests can build as many
apps as they like in one process.

prometheus_client maps those files and grows them with truncate(), leaving holes: a store into a hole on a
full disk is a SIGBUS that kills the worker. Here every file is allocated before it is mapped or grown
(`AllocatedMmapedDict`), and a process that cannot get room for its file keeps that value in memory
(`_value_class`): its samples miss from /metrics, but it serves on.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from dockyard.datadir import DIRECTORY_MODE, FILE_MODE, allocate

log = logging.getLogger("dockyard.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_SECONDS = 1.0
# From a cached manifest HEAD (sub-millisecond) to a multi-GiB layer upload on a slow link.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# Database statements: from a sub-millisecond point read to a GC batch of seconds.
QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess(directory: Path) -> None:
    """Switch this process (and the workers it starts afterwards) to multiprocess metrics in `directory`.

    Clears files left by an earlier run, whose counts would otherwise be added to this run's.
    """
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()
    os.environ[MULTIPROCESS_ENV] = str(directory)
    # prometheus_client chose how to store values when it was imported; choose again now the variable is set.
    _use_allocated_files()


class AllocatedMmapedDict(MmapedDict):
    """prometheus_client's per-process file, with every byte allocated before it is mapped: at creation
    and whenever it grows. Raises OSError (ENOSPC) instead of leaving a hole to fault on."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            fd = os.open(filename, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                allocate(fd, max(os.fstat(fd).st_size, _INITIAL_SIZE))
            finally:
                os.close(fd)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        # The entry's size as the parent lays it out: length, key padded to 8 bytes, value, timestamp.
        encoded = len(key.encode("utf-8"))
        needed = self._used + 4 + encoded + (8 - (encoded + 4) % 8) + 16
        capacity = self._capacity
        while needed > capacity:
            capacity *= 2
        if capacity != self._capacity:  # the parent will truncate() to this size: allocate it first
            fd = os.open(self._fname, os.O_RDWR | os.O_CLOEXEC)
            try:
                allocate(fd, capacity)
            finally:
                os.close(fd)
        super()._init_value(key)


_INITIAL_SIZE = 1 << 16  # prometheus_client's initial file size (mmap_dict._INITIAL_MMAP_SIZE)
_allocating = False


def _use_allocated_files() -> None:
    """In multiprocess mode: values in allocated files, or in memory when there is no room for one."""
    global _allocating
    if multiprocess_directory() is None or _allocating:
        return
    values.MmapedDict = AllocatedMmapedDict  # type: ignore[misc]  # what MultiProcessValue opens files with
    values.ValueClass = _value_class(values.MultiProcessValue())
    _allocating = True


def _value_class(mapped: Any) -> Any:
    warned: list[bool] = []

    def value(*args: Any, **kwargs: Any) -> Any:
        try:
            return mapped(*args, **kwargs)
        except OSError as exc:
            if not warned:
                warned.append(True)
                log.warning(
                    "no room for this process's metrics file in %s (%s): its metrics stay in memory "
                    "and are missing from /metrics",
                    multiprocess_directory(),
                    exc.strerror or exc,
                )
            kwargs.pop("multiprocess_mode", None)
            return values.MutexValue(*args, **kwargs)

    return value


def multiprocess_directory() -> Path | None:
    value = os.environ.get(MULTIPROCESS_ENV)
    return Path(value) if value else None


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """Exposition text and content type: all workers' values in multiprocess mode, else `registry`'s."""
    directory = multiprocess_directory()
    if directory is not None:
        aggregate = CollectorRegistry()
        MultiProcessCollector(aggregate, path=str(directory))
        return generate_latest(aggregate), CONTENT_TYPE_LATEST
    return generate_latest(registry or REGISTRY), CONTENT_TYPE_LATEST


class Metrics:
    """Every metric dockyard records; the app builds one and hands it to what records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_directory() is not None
        _use_allocated_files()
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)  # CPU, memory, fds: meaningful for one process only
        registry = self.registry
        self.http_requests = Counter(
            "http_requests", "HTTP requests answered.", ["route", "method", "status"], registry=registry
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            ["route", "method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.http_request_bytes = Counter(
            "http_request_bytes", "Request body bytes read.", ["route"], registry=registry
        )
        self.http_response_bytes = Counter(
            "http_response_bytes", "Response body bytes sent.", ["route"], registry=registry
        )
        self.uploads_started = Counter("uploads_started", "Blob uploads started.", registry=registry)
        self.uploads_completed = Counter("uploads_completed", "Blob uploads committed.", registry=registry)
        self.uploads_failed = Counter(
            "uploads_failed", "Blob uploads that failed (bad digest, size or range).", registry=registry
        )
        self.blob_bytes_received = Counter(
            "blob_bytes_received", "Blob bytes received in uploads.", registry=registry
        )
        self.blob_bytes_sent = Counter("blob_bytes_sent", "Blob bytes sent to clients.", registry=registry)
        self.registry_failures = Counter(
            "registry_request_failures",
            "/v2 requests answered with an error, by operation (push, pull, delete), status and OCI code.",
            ["operation", "status", "code"],
            registry=registry,
        )
        self._failure_children: dict[tuple[str, int, str], Counter] = {}
        self.proxy_requests = Counter(
            "proxy_requests",
            "Pulls through proxy projects (pull-through cache), by kind (manifest, blob) and outcome: "
            "hit (from the cache), revalidated (upstream HEAD: unchanged), fetched (from upstream), "
            "stale (upstream failed, the cached copy was served), failed (upstream failed, nothing cached), "
            "not_stored (a blob verified and served whole to its client, whose store then failed).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.requests_limited = Counter(
            "registry_requests_limited",
            "/v2 requests refused with 429 by a limit of `limits:`: user (per user or robot), address (per "
            "client address), uploads_client or uploads_total (concurrent uploads).",
            ["limit"],
            registry=registry,
        )
        # The metadata database, from observability/database.py: statements batched as requests are,
        # the connection pool sampled by the flush thread (nothing per checkout).
        self.database_query_duration = Histogram(
            "database_query_duration_seconds",
            "Time a statement took on the metadata database (through SQLAlchemy: all but the hot path's "
            "point lookups, which are timed by their requests).",
            buckets=QUERY_BUCKETS,
            registry=registry,
        )
        self.database_pool_connections = Gauge(
            "database_pool_connections",
            "Metadata database connections held by the workers' pools, in use or idle "
            "(sampled every second).",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._query_buckets = [0] * (len(QUERY_BUCKETS) + 1)
        self._query_seconds = 0.0
        self._samplers: list[Callable[[], None]] = []
        self.cache_lookups = Counter(
            "cache_lookups",
            "Reads of this node's in-process caches, by cache and result (hit or miss).",
            ["cache", "result"],
            registry=registry,
        )
        # Label children per (route, method, status): labels() locks and validates on every call.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram, Counter, Counter]] = {}
        # Request observations add up here and reach prometheus_client in batches: in multiprocess
        # mode every inc() is a locked write to an mmap'd file, too much for each cached manifest GET.
        self._pending: dict[tuple[str, str, int], _Pending] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def observe_request(
        self, route: str, method: str, status: int, seconds: float, request_bytes: int, response_bytes: int
    ) -> None:
        """Record one answered request. Keep the labels bounded: route templates, known methods."""
        key = (route, method, status)
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending()
            pending.count += 1
            pending.seconds += seconds
            pending.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            pending.request_bytes += request_bytes
            pending.response_bytes += response_bytes
        if self._flusher is None:
            self._start_flusher()

    def observe_failure(self, operation: str, status: int, code: str) -> None:
        """Record one /v2 error answer (not batched: errors are rare next to cached GETs). The caller
        keeps the labels bounded: three operations, the spec's codes."""
        key = (operation, status, code)
        child = self._failure_children.get(key)
        if child is None:
            child = self._failure_children[key] = self.registry_failures.labels(operation, str(status), code)
        child.inc()

    def observe_limited(self, limit: str) -> None:
        """Count one request refused by a limit (a handful of fixed names: no user or address labels)."""
        self.requests_limited.labels(limit).inc()

    def observe_query(self, seconds: float) -> None:
        """Record one database statement (batched, like requests)."""
        with self._lock:
            self._query_seconds += seconds
            self._query_buckets[bisect.bisect_left(QUERY_BUCKETS, seconds)] += 1
        if self._flusher is None:
            self._start_flusher()

    def add_sampler(self, sample: Callable[[], None]) -> None:
        """Call `sample` at every flush (about once a second, and before a scrape): for gauges read
        from this process's state, such as its connection pool."""
        self._samplers.append(sample)

    def watch_caches(self, caches: Mapping[str, CountedCache]) -> None:
        """Count the caches' lookups and hits: they keep plain counters (no lock, nothing per get but
        two additions), which the flush thread turns into cache_lookups_total about once a second."""
        seen = dict.fromkeys(caches, (0, 0))

        def sample() -> None:
            for name, cache in caches.items():
                lookups, hits = cache.lookups, cache.hits
                last_lookups, last_hits = seen[name]
                seen[name] = (lookups, hits)
                new_hits, new_lookups = hits - last_hits, lookups - last_lookups
                if new_hits > 0:
                    self.cache_lookups.labels(name, "hit").inc(new_hits)
                if new_lookups - new_hits > 0:
                    self.cache_lookups.labels(name, "miss").inc(new_lookups - new_hits)

        for name in caches:  # every series from the start, at 0: a ratio is defined before the first get
            self.cache_lookups.labels(name, "hit")
            self.cache_lookups.labels(name, "miss")
        self.add_sampler(sample)

    def flush(self) -> None:
        """Hand the batched request observations to prometheus_client. A daemon thread does it every
        FLUSH_SECONDS, so an idle worker's last requests reach a scrape within about a second."""
        with self._lock:
            pending, self._pending = self._pending, {}
            query_buckets, self._query_buckets = self._query_buckets, [0] * len(self._query_buckets)
            query_seconds, self._query_seconds = self._query_seconds, 0.0
        if any(query_buckets):
            self.database_query_duration._sum.inc(query_seconds)
            for index, count in enumerate(query_buckets):
                if count:
                    self.database_query_duration._buckets[index].inc(count)
        for sample in self._samplers:
            sample()
        for key, batch in pending.items():
            requests, duration, received, sent = self._children_for(key)
            requests.inc(batch.count)
            # Histogram has no bulk observe: add to its sum and (non-cumulative) buckets as observe() does.
            duration._sum.inc(batch.seconds)
            for index, count in enumerate(batch.buckets):
                if count:
                    duration._buckets[index].inc(count)
            if batch.request_bytes:
                received.inc(batch.request_bytes)
            if batch.response_bytes:
                sent.inc(batch.response_bytes)

    def _start_flusher(self) -> None:
        def run() -> None:
            while True:
                time.sleep(FLUSH_SECONDS)
                try:
                    self.flush()
                except Exception:  # never let the thread die: later requests still need counting
                    log.exception("metrics flush failed")

        self._flusher = threading.Thread(target=run, name="metrics-flush", daemon=True)
        self._flusher.start()

    def _children_for(self, key: tuple[str, str, int]) -> tuple[Counter, Histogram, Counter, Counter]:
        children = self._children.get(key)
        if children is None:
            route, method, status = key
            children = self._children[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_request_duration.labels(route, method),
                self.http_request_bytes.labels(route),
                self.http_response_bytes.labels(route),
            )
        return children

    def render(self) -> tuple[bytes, str]:
        """What /metrics answers: all workers' values in multiprocess mode, else this instance's."""
        self.flush()
        return render(self.registry)


class CountedCache(Protocol):
    """What watch_caches reads: running totals of gets and of gets answered from the cache."""

    lookups: int
    hits: int


class _Pending:
    __slots__ = ("buckets", "count", "request_bytes", "response_bytes", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.request_bytes = 0
        self.response_bytes = 0


# Background jobs: from a purge of a few seconds to a garbage collection of hours.
JOB_DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0)


class JobMetrics:
    """The job runner's metrics (`dockyard worker`, or the runner `serve` starts: in multiprocess mode
    they add up with the server workers' on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        _use_allocated_files()
        registry = registry or CollectorRegistry()
        self.registry = registry
        self.finished = Counter(
            "jobs_finished",
            "Job attempts finished, by kind and outcome.",
            ["kind", "status"],
            registry=registry,
        )
        self.running = Gauge(
            "jobs_running",
            "Jobs running now, by kind.",
            ["kind"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Time a job attempt ran, by kind.",
            ["kind"],
            buckets=JOB_DURATION_BUCKETS,
            registry=registry,
        )
        self.started = Counter("jobs_started", "Job attempts started, by kind.", ["kind"], registry=registry)
        # Timestamps (Unix seconds): a stale heartbeat is a stuck or dead runner, whatever the queue.
        self.heartbeat = Gauge(
            "jobs_worker_heartbeat_timestamp_seconds",
            "When a job runner last finished a round of polling the queue.",
            registry=registry,
            multiprocess_mode="max",
        )
        self.last_claim = Gauge(
            "jobs_last_claim_timestamp_seconds",
            "When a job runner last claimed a job.",
            registry=registry,
            multiprocess_mode="max",
        )


class WebhookMetrics:
    """Deliveries to per-project webhook policies by result (delivered, failed, gave_up), counted
    where the `notify` job runs. No URL, project or policy labels: they would grow without bound."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        _use_allocated_files()
        registry = registry or CollectorRegistry()
        self.registry = registry
        self.deliveries = Counter(
            "webhook_deliveries", "Webhook deliveries by result.", ["result"], registry=registry
        )

    def observe(self, result: str) -> None:
        self.deliveries.labels(result).inc()


class ReplicationMetrics:
    """Replication (replication/engine.py), counted where the `replicate` job runs: artifacts by
    outcome (copied, skipped, failed, deleted), blobs copied and mounted, bytes copied. No policy,
    endpoint or repository labels: they would grow without bound."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        _use_allocated_files()
        registry = registry or CollectorRegistry()
        self.registry = registry
        self.artifacts = Counter(
            "replication_artifacts", "Replicated artifacts (tags) by outcome.", ["outcome"], registry=registry
        )
        self.blobs = Counter("replication_blobs", "Blobs replicated, by how.", ["how"], registry=registry)
        self.bytes = Counter("replication_bytes", "Blob bytes copied by replication.", registry=registry)

    def observe(self, what: str, amount: int) -> None:
        if what.startswith("artifact_"):
            self.artifacts.labels(what.removeprefix("artifact_")).inc(amount)
        elif what == "blob_copied":
            self.blobs.labels("copied").inc(amount)
        elif what == "blob_mounted":
            self.blobs.labels("mounted").inc(amount)
        elif what == "bytes":
            self.bytes.inc(amount)


class ScanMetrics:
    """Stored scan results by status (done, failed), counted where the `scan` job runs: a scan that
    could not read the image is a job that succeeded and a result that failed, so the jobs' own
    metrics do not tell them apart."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        _use_allocated_files()
        registry = registry or CollectorRegistry()
        self.registry = registry
        self.scans = Counter("scans", "Scan results stored, by status.", ["status"], registry=registry)

    def observe(self, result: dict[str, Any]) -> None:
        """From a `scan` job's result: one artifact's (`status`) or a rescan's (`done`, `failed`)."""
        if result.get("status") in ("done", "failed"):
            self.scans.labels(result["status"]).inc()
        elif "artifacts" in result:
            for status in ("done", "failed"):
                if result.get(status):
                    self.scans.labels(status).inc(int(result[status]))


class GCMetrics:
    """Garbage collection (gc/services.py), recorded where it runs: the job runner or `dockyard
    garbage-collect`. In multiprocess mode they add up with the server workers' on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        _use_allocated_files()
        registry = registry or CollectorRegistry()
        self.registry = registry
        self.runs = Counter("gc_runs", "Garbage collection runs finished.", ["dry_run"], registry=registry)
        self.manifests_deleted = Counter("gc_manifests_deleted", "Manifests GC deleted.", registry=registry)
        self.blobs_deleted = Counter("gc_blobs_deleted", "Blobs GC deleted.", registry=registry)
        self.bytes_freed = Counter("gc_bytes_freed", "Blob and manifest bytes GC freed.", registry=registry)
        self.duration = Histogram(
            "gc_duration_seconds", "Time a GC run took.", buckets=JOB_DURATION_BUCKETS, registry=registry
        )

    def observe(self, *, dry_run: bool, manifests: int, blobs: int, bytes_freed: int, seconds: float) -> None:
        self.runs.labels(str(dry_run).lower()).inc()
        self.duration.observe(seconds)
        if not dry_run:  # a dry run frees nothing
            self.manifests_deleted.inc(manifests)
            self.blobs_deleted.inc(blobs)
            self.bytes_freed.inc(bytes_freed)
