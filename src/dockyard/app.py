"""Composition root: read Settings once, build the services (`dockyard.services`) and what only HTTP
needs (the /v2 gate, /token, the management API), wire the ASGI app.

This module is what the HTTP workers run (`worker_app`); the job runner builds its services without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from dockyard import __version__
from dockyard.accounts.groups import GroupService
from dockyard.accounts.interfaces import LoginLimiter
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.passwords import hash_share, limit_concurrent_hashes
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.sessions import LoginSessionService
from dockyard.accounts.users import UserService
from dockyard.api.allowlist import AllowlistMiddleware
from dockyard.api.auth_changes import AnnounceWrites
from dockyard.api.drain import DrainState, InFlightMiddleware, drain_directory
from dockyard.api.forwarded import ForwardedMiddleware, TrustedProxies
from dockyard.api.health import OPTIONAL_CHECKS, Check, health_routes, readiness_checks
from dockyard.api.lazy import LazyApp
from dockyard.api.management import MOUNT_PATH, ManagementServices, SystemInfo
from dockyard.api.management.sessions import SessionCodec
from dockyard.api.metrics import MetricsAccess, MetricsListener, Render, metrics_endpoint
from dockyard.api.metrics_state import RegistryStateCollector
from dockyard.api.middleware import ObservabilityMiddleware
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import database_error
from dockyard.api.oci.gate import BasicGate, Challenge, Gate, TokenGate
from dockyard.api.oci.limits import ClientKeys, RequestLimits
from dockyard.api.oci.proxying import ProxyEdge
from dockyard.api.oci.routes import OCIRouter
from dockyard.api.oci.streaming import BlobIO
from dockyard.api.oci.upload_limits import UploadLimits
from dockyard.api.token import TokenEndpoint
from dockyard.auth.external import ExternalTokenVerifier
from dockyard.auth.htpasswd import HtpasswdAuthenticator
from dockyard.auth.interfaces import Principal, Scope
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.remembered import DEFAULT_TTL, RememberedLogins
from dockyard.auth.standing import PrincipalStanding
from dockyard.auth.tokens import KeyRing, TokenIssuer, TokenService

# The composition without HTTP lives in dockyard.services (the job runner builds it without the web
# stack); these names stay importable from here too.
from dockyard.bootstrap import (
    auth_mode,
    first_admin,
    local_change_feed_path,
    secure_data,
    session_secret,
    signing_key_passphrases,
)
from dockyard.config.loader import handed_down, load_settings
from dockyard.config.settings import Settings
from dockyard.coordination.buckets import InProcessBuckets
from dockyard.coordination.interfaces import LockManager, Slots, TokenBuckets, Topic, generation_of
from dockyard.coordination.locks import FileLocks
from dockyard.coordination.slots import FileSlots
from dockyard.datadir import private_umask
from dockyard.errors import ConfigError, DockyardError
from dockyard.jobs.metrics import QueueDepthCollector
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
from dockyard.observability.state import StateCollector
from dockyard.projects.quotas import exposition as quota_exposition
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService
from dockyard.proxy.cache import LOCK_PREFIX as PROXY_LOCK_PREFIX
from dockyard.proxy.cache import ProxyCache
from dockyard.proxy.interfaces import Outcome
from dockyard.proxy.mirrors import Mirrors
from dockyard.proxy.services import ProxyProjects, RemoteClients
from dockyard.registry.queries import RegistryQueries
from dockyard.services import (
    Services,
    build_driver_from,
    build_endpoints,
    build_job_runner,
    build_services,
    implicit_proxy,
    implicit_remote,
    job_kinds,
    redis_feed,
    registry_url,
    tune_malloc,
)
from dockyard.webhooks.services import DeliveryLog

if TYPE_CHECKING:  # ldap3 loads only where LDAP is configured
    from dockyard.accounts.ldap import LDAPDirectory
    from dockyard.replication.pushes import ReplicateOnPush
    from dockyard.scans.pushes import ScanOnPush
    from dockyard.scans.scanners import Scanners
    from dockyard.webhooks.policy_sender import PolicySender

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

AUDIT_PURGE_SECONDS = 3600
PROXY_LOCK_SWEEP_SECONDS = 600
REMEMBERED_LOGINS = 10_000  # Basic logins each worker remembers (auth.remembered) at most
log = logging.getLogger("dockyard.app")


def create_app(services: Services) -> ASGIApp:
    settings = services.settings
    io = BlobIO()
    metrics = Metrics()
    instrument_database(metrics, services.db.engine)
    metrics.watch_caches(services.registry.caches())
    auth = build_auth(services)
    request_limits, upload_limits = _limits(settings, metrics)
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
    )
    ctx.proxy, close_proxy = _proxy_edge(services, metrics)
    ctx.scan_pushes = _scan_pushes(services)
    ctx.replication_pushes = _replication_pushes(services)
    feed = redis_feed(services.feed)
    redis_ping = feed.ping if feed is not None else None
    drain = DrainState(drain_directory(settings))
    checks = readiness_checks(services.db, services.driver, redis_ping)
    routes: list[BaseRoute] = [
        *health_routes(checks, draining=drain.draining),
        *auth.routes,
    ]
    if settings.scanner_api.enabled:  # the Harbor pluggable scanner API (api/scanner.py)
        routes.append(_scanner_api(services))
    listener: MetricsListener | None = None
    if settings.metrics.enabled:
        render = _metrics_render(metrics, services, _state_collector(settings, services, checks))
        if settings.metrics.listen:  # a port of its own, instead of http.addr
            listener = MetricsListener(settings.metrics.listen, render)
        else:
            access = _metrics_access(settings, auth)
            routes.append(Route("/metrics", metrics_endpoint(render, access), methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        locks, close_locks = build_locks(settings)
        housekeeping = [asyncio.create_task(_purge_audit_forever(services, locks))]
        if isinstance(locks, FileLocks):  # Redis expires the proxy's lock keys by itself
            housekeeping.append(asyncio.create_task(_sweep_proxy_locks_forever(locks)))
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
    allowlist = AllowlistMiddleware(
        OCIRouter(ctx, fallback=app, gate=auth.gate, limits=request_limits),
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


def _metrics_render(metrics: Metrics, services: Services, state: StateCollector) -> Render:
    # The queue's depth is read from the DB too, with the names a standalone `dockyard worker` uses.
    queue_depth = QueueDepthCollector(services.jobs.db, services.jobs.known_kinds or ())
    registry_state = RegistryStateCollector(services.db)
    quotas = services.quotas
    # Computed at scrape time (the same on every worker and node). Those that read the database are
    # left out while it is down, so the scrape still answers with dockyard_up{check="database"} 0.
    sections: list[Callable[[], bytes]] = [
        state.exposition,
        lambda: quota_exposition(quotas.all()),
        queue_depth.exposition,
        registry_state.exposition,
    ]

    def render() -> tuple[bytes, str]:
        body, content_type = metrics.render()
        return body + b"".join(_section(part) for part in sections), content_type

    return render


def _section(part: Callable[[], bytes]) -> bytes:
    try:
        return part()
    except (SQLAlchemyError, DockyardError, OSError) as exc:
        log.warning("metrics: left out %s: %s", getattr(part, "__qualname__", part), exc)
        return b""


def _state_collector(settings: Settings, services: Services, checks: dict[str, Check]) -> StateCollector:
    volumes: dict[str, Path] = {}
    if settings.storage.driver_name == "filesystem":
        volumes["storage"] = settings.storage_root
    database = services.db.engine.url.database
    if services.db.dialect == "sqlite" and database and database != ":memory:":
        volumes["database"] = Path(database).parent
    return StateCollector(
        checks,
        required=(name for name in checks if name not in OPTIONAL_CHECKS),
        volumes=volumes,
        certificate=settings.http.tls.certificate,
    )


def _metrics_access(settings: Settings, auth: Auth) -> MetricsAccess:
    """/metrics on http.addr: administrators and the metrics token; open with auth off (anyone may pull
    anything there) unless a token is set, or when metrics.public says so."""
    mode = auth_mode(settings)
    return MetricsAccess(
        open_to_all=settings.metrics.public or (mode == "none" and not settings.metrics.token),
        token=settings.metrics.token,
        logins=auth.logins,
        admins_only=mode != "htpasswd",  # htpasswd users may do everything
    )


# --- authentication and authorization -------------------------------------------------------------
@dataclass
class Auth:
    """How this worker authenticates and authorizes requests."""

    gate: Gate | None  # None: the registry is open
    routes: list[BaseRoute] = field(default_factory=list)  # /token and /api/v1
    policy: AccessPolicy | None = None  # dockyard's own auth: who may do what
    logins: RememberedLogins | None = None  # Basic logins, remembered once for /v2, /api/v1 and /metrics

    def visible_projects(self, principal: Principal) -> frozenset[str] | None:
        if self.policy is None:
            return None
        visibility = self.policy.visible_projects(principal)
        return None if visibility.all else visibility.projects


def build_auth(services: Services) -> Auth:
    """The auth mode's gate (registry:2's htpasswd or token modes, dockyard's own, or none) and, for
    dockyard's own, its /token and /api/v1."""
    auth = services.settings.auth
    mode = auth_mode(services.settings)
    if mode == "htpasswd":
        assert auth.htpasswd is not None
        authenticator = HtpasswdAuthenticator(auth.htpasswd.path)
        logins = RememberedLogins(authenticator, DEFAULT_TTL, REMEMBERED_LOGINS, time.time)
        return Auth(BasicGate(logins, auth.htpasswd.realm), logins=logins)
    if mode == "token":
        assert auth.token.rootcertbundle is not None
        verifier = ExternalTokenVerifier.from_bundle(
            auth.token.rootcertbundle, issuer=auth.token.issuer, service=auth.token.service
        )
        return Auth(TokenGate(verifier, Challenge(auth.token.service, auth.token.realm)))
    if mode == "none":
        return Auth(None)
    return _dockyard_auth(services)


def _dockyard_auth(services: Services) -> Auth:
    settings, db, feed = services.settings, services.db, services.feed
    auth = settings.auth

    # Account and key changes reach every worker and node through the feed's AUTH topic.
    generation = generation_of(feed, Topic.AUTH)

    def announce() -> None:
        feed.bump(Topic.AUTH)

    users, robots = UserService(db), RobotService(db)
    tokens = PersonalTokenService(db)
    authenticator = LocalAuthenticator(
        users, GroupService(db), tokens, robots, _login_limiter(settings), _directory(settings)
    )
    policy = AccessPolicy(db)
    passphrase, older = signing_key_passphrases(settings)
    keys = KeyRing(
        db, passphrase=passphrase, older_passphrases=older, generation=generation, announce=announce
    )
    token_service = TokenService(
        keys, issuer=auth.token.issuer, service=auth.token.service, lifetime=auth.token.expiration.seconds
    )
    issuer = TokenIssuer(token_service, authenticator, policy, lookup=authenticator, generation=generation)
    # One remembered login serves /v2, /api/v1 and /metrics alike.
    logins = RememberedLogins(authenticator, DEFAULT_TTL, REMEMBERED_LOGINS, time.time, generation)
    gate = TokenGate(
        token_service,
        Challenge(auth.token.service, auth.token.realm, settings.http.host),
        logins=logins,
        policy=policy,
        generation=generation,
        standing=PrincipalStanding(policy, authenticator, generation=generation),
    )
    management = ManagementServices(
        db=db,
        driver=services.driver,
        registry=services.registry,
        blobs=services.blobs,
        queries=RegistryQueries(db),
        quotas=services.quotas,
        immutability=services.immutability,
        system=SystemInfo(
            __version__,
            settings.storage.driver_name,
            "dockyard",
            auth.ldap is not None,
            settings.storage.maintenance.readonly.enabled,
            settings.storage.delete.enabled,
        ),
        authenticator=authenticator,
        sessions=SessionCodec(session_secret(settings)),
        login_sessions=LoginSessionService(db),
        policy=policy,
        users=users,
        personal_tokens=tokens,
        robots=robots,
        robot_access=RobotAccessService(db, robots),
        # A deleted project's cached policies (quota limit, immutability rules) must go with it.
        projects=ProjectService(db, on_delete=lambda: feed.bump(Topic.POLICIES)),
        members=MemberService(db),
        audit=services.audit,
        keys=keys,
        forget_verified_tokens=gate.forget_verified_tokens,  # tokens of a retired key: refused at once
        jobs=services.jobs,
        logins=logins,
        endpoints=build_endpoints(settings, db),
        proxies=ProxyProjects(db, feed, implicit=implicit_proxy(settings)),
        notifications=DeliveryLog(db, settings.notifications) if settings.notifications.endpoints else None,
        webhooks=services.webhook_policies,
        webhook_sender=_webhook_sender(services),
        pull_policies=services.pull_gate.policies if services.pull_gate is not None else None,
        verdicts_changed=services.verdicts_changed,
        scanners=_scanners(services),
    )
    routes: list[BaseRoute] = [
        *TokenEndpoint(
            issuer, auth.token.service, audit=services.audit, rename=_scope_renamer(services)
        ).routes(),
        Mount(MOUNT_PATH, app=AnnounceWrites(LazyApp(lambda: _management_app(management)), announce)),
    ]
    return Auth(gate, routes, policy, logins)


def _webhook_sender(services: Services) -> Callable[[], PolicySender] | None:
    """What sends a policy's test delivery from the API, built on the first (it loads httpx)."""
    policies = services.webhook_policies
    if policies is None:
        return None
    settings = services.settings

    @functools.cache
    def build() -> PolicySender:
        from dockyard.webhooks.delivery import policy_post
        from dockyard.webhooks.policy_sender import PolicySender

        post = policy_post(settings.upstream.allowed_networks)
        return PolicySender(services.db, policies, settings.webhooks, post, registry_url(settings))

    return build


def _management_app(management: ManagementServices) -> ASGIApp:
    """FastAPI and the API's routers and models: built on the first request under /api/v1, in the
    worker that gets it (api/lazy.py). A node only pushed to and pulled from never loads them."""
    from dockyard.api.management.app import create_management_app

    return create_management_app(management)


def _limits(settings: Settings, metrics: Metrics) -> tuple[RequestLimits | None, UploadLimits | None]:
    """None for each of `limits:` that is off (the default): then /v2 pays one check for it. Through
    Redis when configured (one budget for every worker and node); else request buckets per process and
    upload places per node (files in the datadir)."""
    limits = settings.limits
    clients = ClientKeys(limits.exempt)
    requests = uploads = None
    client = None
    if settings.redis.url and (limits.requests_limited or limits.uploads_limited):
        from dockyard.coordination.redis_client import connect

        client = connect(settings.redis.url)
    if limits.requests_limited:
        buckets: TokenBuckets = InProcessBuckets()
        if client is not None:
            from dockyard.coordination.buckets_redis import RedisBuckets

            buckets = RedisBuckets(client)
        user, address = limits.user, limits.address
        requests = RequestLimits(
            buckets,
            user=(user.rate, user.bucket_size) if user.enabled else None,
            address=(address.rate, address.bucket_size) if address.enabled else None,
            clients=clients,
            metrics=metrics,
            remote=client is not None,
        )
    if limits.uploads_limited:
        slots: Slots = FileSlots(settings.datadir / "run" / "upload-slots")
        if client is not None:
            from dockyard.coordination.slots_redis import RedisSlots

            slots = RedisSlots(client)
        uploads = UploadLimits(
            slots,
            per_client=limits.uploads_per_client,
            total=limits.uploads_total,
            timeout=limits.upload_timeout.seconds,
            clients=clients,
            metrics=metrics,
        )
    return requests, uploads


def _login_limiter(settings: Settings) -> LoginLimiter:
    """Shared by all workers and nodes through Redis when configured; else this process's own."""
    limit = settings.auth.login_limit
    window = limit.window.seconds
    per_address, per_account = limit.max_failures_per_address, limit.max_failures_per_account
    if settings.redis.url:
        from dockyard.accounts.limiter_redis import RedisLoginLimiter
        from dockyard.coordination.redis_client import connect

        client = connect(settings.redis.url)
        return RedisLoginLimiter(
            client, limit.max_failures, window, per_address=per_address, per_account=per_account
        )
    return InProcessLoginLimiter(limit.max_failures, window, per_address=per_address, per_account=per_account)


def _directory(settings: Settings) -> LDAPDirectory | None:
    if settings.auth.ldap is None:
        return None
    from dockyard.accounts.ldap import LDAPDirectory

    try:
        return LDAPDirectory(settings.auth.ldap)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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


def _scanners(services: Services) -> Callable[[], Scanners]:
    """External scanners' registrations, built on first use (cryptography loads then): secrets sealed
    like endpoints' credentials, URLs behind the upstream address guard."""
    settings = services.settings

    @functools.cache
    def build() -> Scanners:
        from dockyard.endpoints.secrets import SecretBox
        from dockyard.scans.scanners import Scanners
        from dockyard.upstream.addresses import AddressGuard

        passphrase, older = signing_key_passphrases(settings)
        return Scanners(
            services.db, SecretBox(passphrase, older), AddressGuard(settings.upstream.allowed_networks)
        )

    return build


def _scanner_api(services: Services) -> BaseRoute:
    """/scanner/api/v1: this registry's scanner for a Harbor (or another dockyard) to call."""
    from dockyard.api.scanner import ScannerAPI

    settings = services.settings
    local = {registry_url(settings)}

    @functools.cache
    def box() -> Any:
        from dockyard.endpoints.secrets import SecretBox

        passphrase, older = signing_key_passphrases(settings)
        return SecretBox(passphrase, older)

    api = ScannerAPI(
        settings.scanner_api,
        services.db,
        services.registry,
        services.jobs,
        local,
        allowed_networks=settings.upstream.allowed_networks,
        box=box,
    )
    return api.mount()


def _scan_pushes(services: Services) -> ScanOnPush:
    """Scan on push: a push to a project with `scan_on_push` queues a `scan` job (scans.pushes)."""
    from dockyard.scans.pushes import ScanOnPush
    from dockyard.scans.services import Scans

    return ScanOnPush(Scans(services.db, jobs=services.jobs))


def _replication_pushes(services: Services) -> ReplicateOnPush:
    """Replication's event trigger: a tag push queues a `replicate` job per event policy selecting it."""
    from dockyard.replication.pushes import ReplicateOnPush
    from dockyard.replication.services import ReplicationPolicies

    return ReplicateOnPush(ReplicationPolicies(services.db), services.jobs)


def _proxy_edge(services: Services, metrics: Metrics) -> tuple[ProxyEdge, Callable[[], None]]:
    """Proxy projects (the pull-through cache): their fetch locks are cluster-wide through Redis when
    configured, else shared by this node's workers. With the function that closes its clients."""
    settings = services.settings
    locks, close_locks = build_locks(settings)
    remotes = RemoteClients(build_endpoints(settings, services.db), implicit_remote(settings))

    def observe(kind: str, outcome: Outcome) -> None:
        metrics.proxy_requests.labels(kind, outcome.value).inc()

    cache = ProxyCache(
        services.db,
        services.registry,
        services.blob_uploads,
        services.quotas,
        services.feed,
        locks,
        remotes,
        wait_seconds=settings.upstream.total_timeout.seconds,
        observe=observe,
    )

    def close() -> None:
        remotes.close()
        close_locks()

    projects = ProxyProjects(services.db, services.feed, implicit=implicit_proxy(settings))
    return ProxyEdge(projects, cache, services.audit, build_mirrors(services)), close


def build_mirrors(services: Services) -> Mirrors | None:
    """Mirror mode's renaming (proxy.namespaces), None when not configured."""
    proxy = services.settings.proxy
    if not proxy.namespaces:
        return None
    return Mirrors(proxy.namespaces, proxy.default_namespace, services.db, services.feed)


def _scope_renamer(services: Services) -> Callable[[list[Scope]], list[Scope]] | None:
    """/token's view of docker's registry-mirror pulls (see Mirrors.rename_scopes)."""
    mirrors = build_mirrors(services)
    return mirrors.rename_scopes if mirrors is not None and mirrors.default_project else None


def build_locks(settings: Settings) -> tuple[LockManager, Callable[[], None]]:
    """Locks for work one process should do at a time: cluster-wide through Redis when configured,
    else among this node's workers (files in the datadir). With the function that closes them."""
    if settings.redis.url:
        from dockyard.coordination.locks_redis import RedisLocks
        from dockyard.coordination.redis_client import connect

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


async def _sweep_proxy_locks_forever(locks: FileLocks) -> None:
    """The pull-through cache's fetch locks are files named per blob and manifest: the ones idle for an
    hour go, every ten minutes (in each worker: the sweep is idempotent)."""
    while True:
        await asyncio.sleep(PROXY_LOCK_SWEEP_SECONDS)
        try:
            swept = await asyncio.to_thread(locks.sweep, PROXY_LOCK_PREFIX, 3600)
            if swept:
                log.debug("swept %d idle proxy lock files", swept)
        except Exception:
            log.exception("sweeping the proxy's lock files failed")


# What `worker_app` imports on its way (lazily, as `dockyard.services` builds them for the job runner
# too), whatever the configuration: serve's main process imports them for its workers (`preload`).
WORKER_LAZY_MODULES = (
    "dockyard.projects.pull_policies",
    "dockyard.replication.pushes",
    "dockyard.replication.services",
    "dockyard.scans.pushes",
    "dockyard.scans.services",
    "dockyard.signatures.pull_gate",
    "dockyard.signatures.services",
    "dockyard.upstream.addresses",
    "dockyard.webhooks.producers",
    "dockyard.webhooks.pulls",
)


def preload(settings: Settings) -> None:
    """In serve's main process, before Granian forks the HTTP workers from it: import what
    `worker_app` would import in each worker for `settings` (the modules above, the storage driver's,
    the database dialect's, the accounts' first start), once for all of them. Each worker spent ~0.3 s
    of CPU on them (compiling them too where no .pyc was written) between its fork and its first
    answer, and held its own copy. It opens no connection or file and starts no thread."""
    import importlib

    from sqlalchemy.engine import make_url

    for name in WORKER_LAZY_MODULES:
        importlib.import_module(name)
    if settings.storage.driver_name != "inmemory" and settings.storage.s3 is None:
        importlib.import_module("dockyard.storage.driver.filesystem")
    if auth_mode(settings) == "dockyard":
        importlib.import_module("dockyard.accounts.bootstrap")
    make_url(settings.database_url).get_dialect()  # imports the dialect's module, not its driver


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
    first_admin(settings, services.db, os.environ.get(ADMIN_PASSWORD_ENV))
    app = create_app(services)
    # SIGKILL, not SIGTERM: a worker whose serve was killed may be unable to run a handler or the
    # watch thread (one did not stop within 20 s in CI); its clients retry, uploads are crash-safe.
    die_with_parent(WORKER_GRACE, on_death=signal.SIGKILL)
    mark_ready()  # serve starts its job runner now: until here the workers have the cores to themselves
    return app
