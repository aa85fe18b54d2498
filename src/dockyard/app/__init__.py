"""Composition root: read Settings once, build the services (`dockyard.services`) and what only HTTP
needs (the /v2 gate, /token, the management API), wire the ASGI app.

This package is what the HTTP workers run (`worker_app`); the job runner builds its services without
it. Its modules: `auth` (the gate, /token, the management API), `features` (limits, the pull-through
cache, scan and replication on push, the scanner API), `housekeeping` (background work and its locks),
`metrics` (/metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from dockyard.accounts.passwords import hash_share, limit_concurrent_hashes
from dockyard.api.allowlist import AllowlistMiddleware
from dockyard.api.drain import DrainState, InFlightMiddleware, drain_directory
from dockyard.api.forwarded import ForwardedMiddleware, TrustedProxies
from dockyard.api.health import health_routes, readiness_checks
from dockyard.api.management import MOUNT_PATH
from dockyard.api.metrics import MetricsListener, metrics_endpoint
from dockyard.api.middleware import ObservabilityMiddleware
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import database_error
from dockyard.api.oci.routes import OCIRouter
from dockyard.api.oci.streaming import BlobIO
from dockyard.app.auth import AUTH_MODULES, build_auth
from dockyard.app.features import build_limits, manifest_effects, proxy_edge, scanner_api_route
from dockyard.app.housekeeping import (
    build_locks,
    purge_audit_forever,
    sweep_proxy_locks_forever,
    trim_heap_forever,
)
from dockyard.app.loop_signals import hear_stop_signals, note_stop_signals
from dockyard.app.metrics import metrics_access, metrics_render, state_collector
from dockyard.app.portal import portal_routes
from dockyard.bootstrap import (
    auth_mode,
    first_admin,
    local_change_feed_path,
    secure_data,
)
from dockyard.config.loader import handed_down, load_settings
from dockyard.config.settings import Settings
from dockyard.coordination.locks import FileLocks
from dockyard.datadir import private_umask
from dockyard.errors import DockyardError
from dockyard.lifecycle import (
    ADMIN_PASSWORD_ENV,
    CONFIG_ENV,
    WORKER_GRACE,
    bind_to_parent,
    die_with_parent,
    mark_ready,
    started_by_serve,
)
from dockyard.observability.database import instrument_database
from dockyard.observability.logging import configure_logging
from dockyard.observability.metrics import Metrics

# The composition without HTTP lives in dockyard.services (the job runner builds it without the web
# stack); these names stay importable from here too.
from dockyard.services import (
    Services,
    build_driver_from,
    build_job_runner,
    build_services,
    job_kinds,
    redis_feed,
    tune_malloc,
)

__all__ = [
    "ADMIN_PASSWORD_ENV",
    "CONFIG_ENV",
    "Services",
    "build_driver_from",
    "build_job_runner",
    "build_services",
    "create_app",
    "drain_directory",
    "job_kinds",
    "local_change_feed_path",
    "secure_data",
    "worker_app",
]


def create_app(services: Services) -> ASGIApp:
    settings = services.settings
    io = BlobIO()
    metrics = Metrics()
    instrument_database(metrics, services.db.engine)
    metrics.watch_caches(services.registry.caches())
    effects = manifest_effects(services)
    auth = build_auth(services, effects)
    request_limits, upload_limits = build_limits(settings, metrics)
    ctx = OCIContext(
        services.registry,
        services.blob_uploads,
        services.blobs,
        io,
        metrics,
        base_url=(settings.http.host or "").rstrip("/"),
        # Object stores serve blob bytes themselves: GETs are redirected to presigned URLs.
        redirect_blobs=settings.storage.driver_name == "s3" and not settings.storage.redirect.disable,
        visible_projects=auth.visible_projects if auth.policy else None,
        audit=services.audit,
        pulls=services.pulls,
        pull_audit=services.pull_audit,
        notifications=services.notifications,
        pull_notifications=services.pull_notifications,
        upload_limits=upload_limits,
        pull_gate=services.pull_gate,
        effects=effects,
    )
    ctx.proxy, close_proxy = proxy_edge(services, metrics)
    feed = redis_feed(services.feed)
    redis_ping = feed.ping if feed is not None else None
    drain = DrainState(drain_directory(settings))
    checks = readiness_checks(services.db, services.driver, redis_ping)
    routes: list[BaseRoute] = [
        *health_routes(checks, draining=drain.draining),
        *auth.routes,
    ]
    if auth.management is not None and auth.sessions is not None:  # the web portal, on /api/v1
        routes += portal_routes(settings, auth.management, auth.sessions)
    if settings.scanner_api.enabled:  # the Harbor pluggable scanner API (api/scanner.py)
        routes.append(scanner_api_route(services))
    listener: MetricsListener | None = None
    if settings.metrics.enabled:
        render = metrics_render(metrics, services, state_collector(settings, services, checks))
        if settings.metrics.listen:  # a port of its own, instead of http.addr
            listener = MetricsListener(settings.metrics.listen, render)
        else:
            access = metrics_access(settings, auth)
            routes.append(Route("/metrics", metrics_endpoint(render, access), methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hear_stop_signals()  # a stop during the worker's start is not lost (app/loop_signals.py)
        locks, close_locks = build_locks(settings)
        housekeeping = [
            asyncio.create_task(purge_audit_forever(services, locks)),
            asyncio.create_task(trim_heap_forever()),
        ]
        if isinstance(locks, FileLocks):  # Redis expires the proxy's lock keys by itself
            housekeeping.append(asyncio.create_task(sweep_proxy_locks_forever(locks)))
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
            close_proxy()
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
    router = OCIRouter(ctx, fallback=app, gate=auth.gate, limits=request_limits)
    allowlist = AllowlistMiddleware(
        router,
        settings.auth.allow_ips,
        settings.auth.management_allow_ips,
        audit=services.audit,
    )
    observed = ObservabilityMiddleware(
        # Without lists the layer would only pass every request on: one call less on each.
        InFlightMiddleware(allowlist if allowlist.enabled else router, drain),
        metrics,
        access_log=not settings.log.accesslog.disabled,
        extra_headers=settings.http.headers,
    )
    # Outermost, so every layer below sees the client a trusted proxy reports (api/forwarded.py).
    proxies = TrustedProxies(settings.http.trusted_proxies)
    return ForwardedMiddleware(observed, proxies) if proxies else observed


async def _not_found(request: Request, exc: Exception) -> Response:
    if _in_management_api(request):
        return _management_error(404, "not found")
    return PlainTextResponse("not found", status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    message = f"{request.method} is not allowed here"
    if _in_management_api(request):
        return _management_error(405, message)
    return PlainTextResponse(message, status_code=405)


def _management_error(status: int, message: str) -> Response:
    from dockyard.api.management.errors import error_response  # FastAPI's: loaded only for the API

    return error_response(status, message)


def _in_management_api(request: Request) -> bool:
    """A path under /api/v1 its mount did not take (`/api/v1/projects/%0A`: Starlette's path pattern
    stops at a newline) is still answered in the API's error format."""
    path = request.url.path
    return path == MOUNT_PATH or path.startswith(MOUNT_PATH + "/")


# What `worker_app` imports on its way (lazily, as `dockyard.services` builds them for the job runner
# too), whatever the configuration: serve's main process imports them for its workers (`preload`).
WORKER_LAZY_MODULES = (
    "dockyard.projects.pull_policies",
    "dockyard.replication.pushes",  # not their services and models: built on a worker's first push
    "dockyard.scans.pushes",
    "dockyard.signatures.pull_gate",
    "dockyard.upstream.addresses",
    "dockyard.webhooks.producers",
    "dockyard.webhooks.pulls",
)


def preload(settings: Settings) -> None:
    """In serve's main process, before Granian forks the HTTP workers from it: import what
    `worker_app` would import in each worker for `settings` (the modules above, the storage driver's,
    the database dialect's), once for all of them. Each worker spent ~0.3 s of CPU on them (compiling
    them too where no .pyc was written) between its fork and its first answer, and held its own copy.
    It opens no connection or file and starts no thread.

    It also configures the ORM's mappers (their relationships and instrumented attributes, which
    SQLAlchemy otherwise does at the first query or statement compiled: the lookups `worker_app`
    prepares), ~0.02 s of CPU each worker spent after its fork, on the way to its first answer."""
    import importlib

    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import configure_mappers

    for name in WORKER_LAZY_MODULES:
        importlib.import_module(name)
    if settings.storage.driver_name != "inmemory" and settings.storage.s3 is None:
        importlib.import_module("dockyard.storage.driver.filesystem")
    mode = auth_mode(settings)
    for name in AUTH_MODULES[mode]:  # the gate's, and for dockyard's own auth its accounts and tokens
        importlib.import_module(name)
    # Not the signature verifiers (`dockyard.signatures.services`): the pull gate loads them on the
    # first pull a project's signature policy judges (services._StoredVerdicts), which a registry
    # without such policies never makes. Preloaded, they cost every start ~20-45 ms of CPU before the
    # fork for ~0.8 MiB each worker then shared (PyJWT has loaded cryptography's X.509 already).
    if settings.http.tls.certificate is not None:  # its expiry, on /metrics
        importlib.import_module("cryptography.x509")
    # The dialect's module and its driver: psycopg cost each worker and the job runner 53-56 ms of CPU
    # after the fork, on the way to the first answer (docs/benchmarks.md, "Start-up and stop").
    make_url(settings.database_url).get_dialect().import_dbapi()
    configure_mappers()  # every model is imported by now (dockyard.app and the modules above)


def worker_app() -> Any:
    """ASGI factory for server worker processes: on the settings `serve` validated (a worker Granian
    starts again after the config file was edited runs on what the others run on); under another
    server (uvicorn), on the file DOCKYARD_CONFIG names and the environment."""
    # A worker of a killed serve must not go on beside the next one: killed with serve, by the kernel,
    # while it loads (serve's fork hook did so already, before the import of this module; again for
    # other starts) and once it serves (below).
    bind_to_parent()
    private_umask()  # serve set it already; under another server (uvicorn) the app does
    tune_malloc()
    settings = handed_down() if started_by_serve() else None
    if settings is None:
        config = os.environ.get(CONFIG_ENV)
        settings = load_settings(Path(config) if config else None, os.environ)
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    # The node's workers share its cores: each runs its share of password hashes (7 MiB each) at once.
    workers = 1 if settings.storage.driver_name == "inmemory" else settings.http.workers  # as serve runs
    limit_concurrent_hashes(hash_share(workers))
    # `serve` migrated already; under another server (uvicorn) the app makes sure itself.
    services = build_services(settings, migrate=True)
    # `serve`'s start-up child made the first administrator before any worker started; the count of
    # the users behind it (a statement compiled, a connection opened: ~2-4 ms of CPU) would delay each
    # worker's first answer. Under another server (uvicorn) the app makes it itself.
    if not started_by_serve():
        first_admin(settings, services.db, os.environ.get(ADMIN_PASSWORD_ENV))
    app = create_app(services)
    # SIGKILL, not SIGTERM: a worker whose serve was killed may be unable to run a handler or the
    # watch thread (one did not stop within 20 s in CI); its clients retry, uploads are crash-safe.
    die_with_parent(WORKER_GRACE, on_death=signal.SIGKILL)
    mark_ready()  # serve starts its job runner now: until here the workers have the cores to themselves
    if started_by_serve():  # Granian puts in its stop handlers next (app/loop_signals.py)
        note_stop_signals()
    return app
