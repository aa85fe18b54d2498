"""Composition root: read Settings once, build the services, wire the ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from dockyard.api.allowlist import AllowlistMiddleware
from dockyard.api.drain import DrainState, InFlightMiddleware
from dockyard.api.forwarded import ForwardedMiddleware, TrustedProxies
from dockyard.api.health import health_routes, readiness_checks
from dockyard.api.management import MOUNT_PATH
from dockyard.api.management.errors import error_response as management_error
from dockyard.api.metrics import MetricsAccess, MetricsListener, Render, metrics_endpoint
from dockyard.api.middleware import ObservabilityMiddleware
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import database_error
from dockyard.api.oci.gate import BasicGate, TokenGate
from dockyard.api.oci.routes import OCIRouter
from dockyard.api.oci.streaming import BlobIO
from dockyard.audit.services import AuditLog
from dockyard.config.durations import parse_duration
from dockyard.config.loader import load_settings
from dockyard.config.settings import Settings
from dockyard.datadir import InsecureDataDirectory, private_umask, secure
from dockyard.db.engine import build_engine, sqlite_file
from dockyard.db.locks import FileLocks, LockManager, RedisLocks
from dockyard.db.migrate import upgrade
from dockyard.db.readonly import ReadOnlyFlag
from dockyard.db.session import Database
from dockyard.errors import DockyardError
from dockyard.gc.tasks import gc_kind
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.metrics import QueueDepthCollector
from dockyard.jobs.services import JobQueue, JobRunner
from dockyard.jobs.tasks import selftest_kind
from dockyard.lifecycle import WORKER_GRACE, die_with_parent
from dockyard.observability.logging import configure_logging
from dockyard.observability.metrics import GCMetrics, JobMetrics, Metrics
from dockyard.projects.quotas import Quotas
from dockyard.projects.quotas import exposition as quota_exposition
from dockyard.registry.cache import ChangeFeed, InProcessChangeFeed, LocalChangeFeed
from dockyard.registry.cache_redis import RedisChangeFeed, connect
from dockyard.registry.pulls import PullRecorder
from dockyard.registry.services import Registry
from dockyard.retention.tasks import retention_kind
from dockyard.security import Security, auth_mode, build_security, first_admin
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver import build_driver
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.uploads import UploadStore

ADMIN_PASSWORD_ENV = "DOCKYARD_ADMIN_PASSWORD"
AUDIT_PURGE_SECONDS = 3600
_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
CONFIG_ENV = "DOCKYARD_CONFIG"  # the config file the workers read (set by serve)
log = logging.getLogger("dockyard.app")


@dataclass
class Services:
    settings: Settings
    db: Database
    driver: StorageDriver
    uploads: UploadStore
    blobs: BlobStore
    registry: Registry
    feed: ChangeFeed
    audit: AuditLog
    pulls: PullRecorder
    jobs: JobQueue = field(init=False)  # built from the others, with every kind known

    def __post_init__(self) -> None:
        self.jobs = JobQueue(self.db, known_kinds=[kind.name for kind in job_kinds(self)])

    def close(self) -> None:
        self.audit.close()  # writes the events still queued
        self.pulls.close()  # writes the pull times still noted
        if isinstance(self.feed, RedisChangeFeed):
            self.feed.close()
        self.db.dispose()


def drain_directory(settings: Settings) -> Path:
    """Where `serve` and its workers share the drain flag and in-flight counts (api/drain.py)."""
    return settings.datadir / "run" / "drain"


def local_change_feed_path(settings: Settings) -> Path | None:
    """The file this node's processes share their change feed in; None when there is none (Redis
    carries the changes, or an in-memory store keeps everything in one process)."""
    if settings.redis.url or settings.storage.driver_name == "inmemory":
        return None
    return settings.datadir / "run" / "changes"


def secure_data(settings: Settings) -> None:
    """At start: files this process creates are private (umask 077), and the data directory (with a
    storage root or SQLite database kept elsewhere) is made private if an older version left it open.
    Exits with a message when it cannot be (another user's directory that others may read)."""
    private_umask()
    directories = []
    if settings.storage.driver_name == "filesystem":
        directories.append(settings.storage_root)
    files = []
    database = sqlite_file(settings.database_url)
    if database is not None:
        files = [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    try:
        changed = secure(settings.datadir, directories, files)
    except InsecureDataDirectory as exc:
        log.error("%s", exc)
        sys.exit(f"dockyard: {exc}")
    for change in changed:
        log.warning("made private (other users could read it): %s", change)


def build_driver_from(settings: Settings) -> StorageDriver:
    if settings.storage.driver_name == "inmemory":
        return build_driver("inmemory")
    if settings.storage.s3 is not None:
        return build_driver("s3", **settings.storage.s3.model_dump(exclude_none=True))
    return build_driver("filesystem", rootdirectory=settings.storage_root)


def build_services(settings: Settings, migrate: bool = True) -> Services:
    engine = build_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    db = Database(engine, read_only=ReadOnlyFlag.for_settings(settings))
    driver = build_driver_from(settings)
    # Several worker processes share one node's caches' change feed through a file; an
    # in-memory store cannot be shared by processes anyway, so it gets a process-local feed.
    feed: ChangeFeed
    feed_path = local_change_feed_path(settings)
    if settings.redis.url:  # nodes (and their workers) hear each other's changes through Redis
        feed = RedisChangeFeed(connect(settings.redis.url))
    elif feed_path is None:
        feed = InProcessChangeFeed()
    else:
        feed = LocalChangeFeed(feed_path)
    uploads = UploadStore(db, driver)
    blobs = BlobStore(db, driver, uploads)
    audit = AuditLog(db)
    registry = Registry(
        db,
        blobs,
        uploads,
        feed,
        delete_enabled=settings.storage.delete.enabled,
        read_only=settings.storage.maintenance.readonly.enabled,
        audit=audit,  # quota warnings
        max_upload_size=settings.storage.uploads.max_size_bytes,
        cache_bytes=settings.storage.cache.memory_bytes,
    )
    # One per worker process: its flushing thread starts with the first pull, after any fork.
    pulls = PullRecorder(db)
    return Services(settings, db, driver, uploads, blobs, registry, feed, audit, pulls)


def create_app(services: Services) -> ASGIApp:
    settings = services.settings
    io = BlobIO()
    metrics = Metrics()
    security = build_security(
        settings,
        services.db,
        services.driver,
        services.registry,
        services.audit,
        jobs=services.jobs,
        feed=services.feed,
    )
    ctx = OCIContext(
        services.registry,
        io,
        metrics,
        base_url=(settings.http.host or "").rstrip("/"),
        # Object stores serve blob bytes themselves: GETs are redirected to presigned URLs.
        redirect_blobs=settings.storage.driver_name == "s3" and not settings.storage.redirect.disable,
        visible_projects=security.visible_projects if security.policy else None,
        audit=services.audit,
        pulls=services.pulls,
    )
    redis_ping = services.feed.ping if isinstance(services.feed, RedisChangeFeed) else None
    drain = DrainState(drain_directory(settings))
    routes: list[BaseRoute] = [
        *health_routes(readiness_checks(services.db, services.driver, redis_ping), draining=drain.draining),
        *security.routes,
    ]
    listener: MetricsListener | None = None
    if settings.metrics.enabled:
        render = _metrics_render(metrics, services.registry.quotas, services.jobs)
        if settings.metrics.listen:  # a port of its own, instead of http.addr
            listener = MetricsListener(settings.metrics.listen, render)
        else:
            access = _metrics_access(settings, security)
            routes.append(Route("/metrics", metrics_endpoint(render, access), methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        locks, close_locks = build_locks(settings)
        housekeeping = [asyncio.create_task(_purge_audit_forever(services, locks))]
        if listener is not None:
            listener.start()
        try:
            yield
        finally:
            if listener is not None:
                listener.close()
            for task in housekeeping:
                task.cancel()
            close_locks()
            metrics.flush()
            io.shutdown()
            services.close()

    app = Starlette(
        routes=routes,
        exception_handlers={
            404: _not_found,
            405: _not_allowed,
            SQLAlchemyError: database_error,
            # The directory down at /token, a login's bookkeeping write on a full disk, say.
            DockyardError: database_error,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    allowlist = AllowlistMiddleware(
        OCIRouter(ctx, fallback=app, gate=security.gate),
        settings.auth.allow_ips,
        settings.auth.management_allow_ips,
        audit=services.audit,
    )
    observed = ObservabilityMiddleware(
        InFlightMiddleware(allowlist, drain),
        metrics,
        access_log=not settings.log.accesslog.disabled,
        extra_headers=settings.http.headers,
    )
    # Outermost, so every layer below sees the client a trusted proxy reports (api/forwarded.py).
    proxies = TrustedProxies(settings.http.trusted_proxies)
    return ForwardedMiddleware(observed, proxies) if proxies else observed


def _metrics_render(metrics: Metrics, quotas: Quotas, jobs: JobQueue) -> Render:
    # The queue's depth is read from the DB too, with the names a standalone `dockyard worker` uses.
    queue_depth = QueueDepthCollector(jobs.db, jobs.known_kinds or ())

    def render() -> tuple[bytes, str]:
        body, content_type = metrics.render()
        # Quota gauges come from the DB at scrape time: the same on every worker and node.
        return body + quota_exposition(quotas.all()) + queue_depth.exposition(), content_type

    return render


def _metrics_access(settings: Settings, security: Security) -> MetricsAccess:
    """/metrics on http.addr: administrators and the metrics token; open with auth off (anyone may pull
    anything there) unless a token is set, or when metrics.public says so."""
    mode = auth_mode(settings)
    gate = security.gate
    return MetricsAccess(
        open_to_all=settings.metrics.public or (mode == "none" and not settings.metrics.token),
        token=settings.metrics.token,
        logins=gate.basic if isinstance(gate, TokenGate | BasicGate) else None,
        admins_only=mode != "htpasswd",  # htpasswd users may do everything
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    if _in_management_api(request):
        return management_error(404, "not found")
    return PlainTextResponse("not found", status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    message = f"{request.method} is not allowed here"
    if _in_management_api(request):
        return management_error(405, message)
    return PlainTextResponse(message, status_code=405)


def _in_management_api(request: Request) -> bool:
    """A path under /api/v1 its mount did not take (`/api/v1/projects/%0A`: Starlette's path pattern
    stops at a newline) is still answered in the API's error format."""
    path = request.url.path
    return path == MOUNT_PATH or path.startswith(MOUNT_PATH + "/")


def build_locks(settings: Settings) -> tuple[LockManager, Callable[[], None]]:
    """Locks for work one process should do at a time: cluster-wide through Redis when configured,
    else among this node's workers (files in the datadir). With the function that closes them."""
    if settings.redis.url:
        client = connect(settings.redis.url)
        return RedisLocks(client), client.close
    return FileLocks(settings.datadir / "run" / "locks"), lambda: None


async def _purge_audit_forever(services: Services, locks: LockManager) -> None:
    """Drop audit events past the retention period, hourly, in one worker of the cluster (with Redis)
    or of the node: whoever takes the hour's lease first. The lease is not released after the purge
    but runs out just before the next hour's attempts, so the others skip this hour's purge."""
    lease = AUDIT_PURGE_SECONDS - 60
    while True:
        try:
            if await asyncio.to_thread(locks.lock("audit-purge", lease).acquire):
                purged = await asyncio.to_thread(
                    services.audit.purge_older_than, services.settings.audit.retention.delta
                )
                if purged:
                    log.info(
                        "purged %d audit events older than %s", purged, services.settings.audit.retention
                    )
        except Exception:  # Redis unreachable included: skipped this hour, tried again the next
            log.exception("audit purge failed")
        await asyncio.sleep(AUDIT_PURGE_SECONDS)


def job_kinds(services: Services, gc_metrics: GCMetrics | None = None) -> list[JobKind]:
    """Every kind of background job, with its handler bound to the services it needs.

    One line per kind: each feature package adds its own here (its handler lives in its `tasks.py`).
    """
    kinds = [_purge_uploads_kind(services), selftest_kind()]
    kinds.append(gc_kind(services.db, services.driver, services.feed, gc_metrics or GCMetrics()))
    kinds.append(retention_kind(services.db, services.registry, services.audit))
    return kinds


def build_job_runner(services: Services, node: str | None = None) -> JobRunner:
    """The runner `dockyard worker` (or the worker `serve` starts) and `dockyard garbage-collect` use."""
    jobs = services.settings.jobs
    metrics = JobMetrics()  # GC's in the same registry: a standalone worker serves them together
    return JobRunner(
        services.jobs,
        job_kinds(services, GCMetrics(metrics.registry)),
        node=node or socket.gethostname(),
        threads=jobs.threads,
        poll_interval=jobs.poll_interval.seconds,
        lease=jobs.lease.delta,
        history=jobs.history.delta,
        metrics=metrics,
    )


def _purge_uploads_kind(services: Services) -> JobKind:
    """Stale upload sessions (and temp objects without one) older than uploadpurging.age, every
    uploadpurging.interval (from the first start) while uploadpurging.enabled; or when triggered."""
    purging = services.settings.storage.maintenance.uploadpurging

    def purge_uploads(ctx: JobContext) -> dict[str, Any]:
        age = timedelta(seconds=parse_duration(str(ctx.params.get("age", purging.age))))
        dry_run = bool(ctx.params.get("dryrun", purging.dryrun))
        purged = services.uploads.purge_stale(age, dry_run)
        ctx.log(f"{'would purge' if dry_run else 'purged'} {len(purged)} uploads untouched for {age}")
        return {"purged": len(purged), "dryrun": dry_run, "uploads": purged[:100]}

    schedule = f"@every {purging.interval}" if purging.enabled else None
    return JobKind("purge-uploads", purge_uploads, timeout=timedelta(hours=1), default_schedule=schedule)


def tune_malloc() -> None:
    """Return big buffers to the OS when freed, keep the rest. glibc's default raises its mmap threshold
    after the first large free, so later large allocations (argon2's 19 MiB) come from per-thread arenas
    that keep the memory: a worker grew past 600 MiB issuing tokens. A fixed threshold above the pieces
    of request bodies the server hands over (up to about 400 KiB each) keeps those off mmap: at 256 KiB
    every piece was a fresh mapping, faulted in page by page and unmapped again, a quarter of a push's
    CPU. The trim threshold lets an arena keep a few MiB free at its top for the next pieces."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * 1024 * 1024)
        libc.mallopt(_M_ARENA_MAX, 4)


def worker_app() -> Any:
    """ASGI factory for server worker processes: settings come from the file `serve` was given."""
    die_with_parent(WORKER_GRACE)  # a worker of a killed serve must not serve on beside the next one
    private_umask()  # serve set it already; under another server (uvicorn) the app does
    tune_malloc()
    config = os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(config) if config else None, os.environ)
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    # `serve` migrated already; under another server (uvicorn) the app makes sure itself.
    services = build_services(settings, migrate=True)
    first_admin(settings, services.db, os.environ.get(ADMIN_PASSWORD_ENV))
    return create_app(services)
