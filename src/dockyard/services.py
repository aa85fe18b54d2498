"""Composition root, the part without HTTP: build the services and the job runner from Settings;
the auth mode, the shared secrets and the first administrator.

`app` (the ASGI app of the HTTP workers) and the job runner (`dockyard worker`, the one `serve` starts)
both build their services here. Nothing here imports the web stack (Starlette, FastAPI, the management
API) or an optional backend's client library (redis, boto3, psycopg, ldap3): those load where they are
configured and used, so each process holds only the modules it runs (docs/benchmarks.md, "Memory").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from dockyard.audit.interfaces import AuditRecorder
from dockyard.audit.pull_counts import PullCounter
from dockyard.audit.services import AuditLog
from dockyard.bootstrap import auth_mode, local_change_feed_path, signing_key_passphrases
from dockyard.config.durations import parse_duration
from dockyard.config.settings import Settings
from dockyard.coordination.caches import MIB, GenerationCache, KeyedGenerationCache
from dockyard.coordination.feeds import InProcessChangeFeed, LocalChangeFeed
from dockyard.coordination.interfaces import ChangeFeed, Topic, generation_of, keyed_generation_of
from dockyard.db.engine import build_engine
from dockyard.db.readonly import ReadOnlyFlag
from dockyard.db.session import Database
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.jobs.queue import JobQueue
from dockyard.lifecycle import libc as c_library
from dockyard.lifecycle import started_by_serve
from dockyard.observability.metrics import GCMetrics, JobMetrics, ScanMetrics
from dockyard.projects.immutability import ImmutabilityRules
from dockyard.projects.interfaces import ImmutableRule, ProjectEvents
from dockyard.projects.quotas import CachedLimit, Quotas
from dockyard.projects.rbac import project_of
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.pulls import PullRecorder
from dockyard.registry.services import Registry
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver import build_driver
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.uploads import UploadStore

if TYPE_CHECKING:
    from dockyard.coordination.feeds_redis import RedisChangeFeed
    from dockyard.endpoints.secrets import SecretBox
    from dockyard.endpoints.services import EndpointService
    from dockyard.jobs.runner import JobRunner
    from dockyard.proxy.interfaces import ProxyConfig
    from dockyard.scans.adapters import Adapters
    from dockyard.signatures.pull_gate import PullGate
    from dockyard.upstream.interfaces import RemoteRegistry
    from dockyard.webhooks.policies import WebhookPolicies
    from dockyard.webhooks.producers import ProjectEventSink
    from dockyard.webhooks.pulls import PullEvents
    from dockyard.webhooks.services import Outbox

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2  # glibc malloc arenas per process (tune_malloc)
log = logging.getLogger("dockyard.services")


@dataclass
class Services:
    settings: Settings
    db: Database
    driver: StorageDriver
    uploads: UploadStore
    blobs: BlobStore
    quotas: Quotas
    immutability: ImmutabilityRules
    registry: Registry
    blob_uploads: BlobUploads
    feed: ChangeFeed
    audit: AuditLog
    pulls: PullRecorder
    pull_audit: PullCounter | None  # None with audit.pulls: off
    webhook_policies: WebhookPolicies | None = None  # per-project webhooks (None: a bare test setup)
    project_events: ProjectEventSink | None = None  # quota, immutability, retention events for them
    pull_gate: PullGate | None = None  # per-project pull policies on manifest GETs (None: not checked)
    jobs: JobQueue = field(init=False)  # built from the others, with every kind known
    # Appends registry:2 notification events and webhook policies' events (None: neither exists).
    notifications: Outbox | None = field(init=False)
    # Pull events (and refusals), batched in memory; its thread starts with the first event.
    pull_notifications: PullEvents | None = field(init=False)

    def __post_init__(self) -> None:
        # On the feed: a job queued here starts at once in the runner of any process that watches it.
        self.jobs = JobQueue(self.db, known_kinds=list(JOB_KINDS), feed=self.feed)
        if self.pull_gate is not None:  # verification jobs queued on pushes
            self.pull_gate.enqueue = self.jobs.enqueue
        self.notifications = build_outbox(self.settings, self.db, self.jobs, self.webhook_policies)
        self.pull_notifications = None
        if self.notifications is not None:
            from dockyard.webhooks.pulls import PullEvents

            self.pull_notifications = PullEvents(self.notifications)
            if self.project_events is not None:
                self.project_events.attach(self.notifications, self.pull_notifications)

    def verdicts_changed(self, repository: str | None = None) -> None:
        """A verdict stored in `repository` (`signatures.interfaces.VerdictsChanged`): every
        process's pull gate decides again for that repository; None (trusted keys changed): for all."""
        if repository is None:
            self.feed.bump(Topic.VERDICTS)
        else:
            self.feed.bump(Topic.VERDICTS, repository)

    def close(self) -> None:
        self.audit.close()  # writes the events still queued
        self.pulls.close()  # writes the pull times still noted
        if self.pull_audit is not None:
            self.pull_audit.close()  # adds the pull counts still in memory
        if self.pull_notifications is not None:
            self.pull_notifications.close()  # records the pull events still in memory
        feed = redis_feed(self.feed)
        if feed is not None:
            feed.close()
        self.db.dispose()


def redis_feed(feed: ChangeFeed) -> RedisChangeFeed | None:
    """`feed` when it goes through Redis. Its module (and redis-py) is loaded only where Redis is
    configured: without it loaded, no feed can be one."""
    module = sys.modules.get("dockyard.coordination.feeds_redis")
    if module is not None and isinstance(feed, module.RedisChangeFeed):
        return cast("RedisChangeFeed", feed)
    return None


def build_driver_from(settings: Settings) -> StorageDriver:
    if settings.storage.driver_name == "inmemory":
        return build_driver("inmemory")
    if settings.storage.s3 is not None:
        return build_driver("s3", **settings.storage.s3.model_dump(exclude_none=True))
    return build_driver("filesystem", rootdirectory=settings.storage_root)


def build_services(settings: Settings, migrate: bool = True) -> Services:
    """Everything a process of this node needs, on one engine. `migrate`: bring the schema to the
    current revision first, unless this is a child of `serve`, which migrated before it started any:
    then Alembic, its migration scripts and their templates are never loaded in it."""
    engine = build_engine(settings.database_url)
    if migrate and not started_by_serve():
        from dockyard.db.revision import ensure_current

        ensure_current(engine)
    db = Database(
        engine, read_only=ReadOnlyFlag.for_settings(settings), flush_commits=settings.database.flush_commits
    )
    driver = build_driver_from(settings)
    # Several worker processes share one node's caches' change feed through a file; an
    # in-memory store cannot be shared by processes anyway, so it gets a process-local feed.
    feed: ChangeFeed
    feed_path = local_change_feed_path(settings)
    if settings.redis.url:  # nodes (and their workers) hear each other's changes through Redis
        from dockyard.coordination.feeds_redis import RedisChangeFeed
        from dockyard.coordination.redis_client import connect

        feed = RedisChangeFeed(connect(settings.redis.url))
    elif feed_path is None:
        feed = InProcessChangeFeed()
    else:
        feed = LocalChangeFeed(feed_path)
    uploads = UploadStore(db, driver)
    blobs = BlobStore(db, driver, uploads)
    audit = AuditLog(db)
    policies = build_webhook_policies(settings, db, feed)
    from dockyard.webhooks.producers import ProjectEventSink

    events = ProjectEventSink(policies)
    quotas = build_quotas(db, feed, audit, events)
    immutability = build_immutability(db, feed, events)
    read_only = settings.storage.maintenance.readonly.enabled
    registry = Registry(
        db,
        blobs,
        feed,
        quotas,
        immutability,
        delete_enabled=settings.storage.delete.enabled,
        read_only=read_only,
        cache_bytes=settings.storage.cache.memory_bytes,
    )
    blob_uploads = BlobUploads(
        db, blobs, uploads, feed, quotas, read_only, max_upload_size=settings.storage.uploads.max_size_bytes
    )
    # One per worker process: its flushing thread starts with the first pull, after any fork.
    pulls = PullRecorder(db)
    pull_audit = PullCounter(db) if settings.audit.pulls == "counted" else None  # the same
    gate = build_pull_gate(db, registry, blobs, feed)
    return Services(
        settings,
        db,
        driver,
        uploads,
        blobs,
        quotas,
        immutability,
        registry,
        blob_uploads,
        feed,
        audit,
        pulls,
        pull_audit,
        policies,
        events,
        gate,
    )


def build_pull_gate(db: Database, registry: Registry, blobs: BlobStore, feed: ChangeFeed) -> PullGate:
    """Pull policies: settings cached per project (Topic.POLICIES), decisions per (repository, digest)
    until a verdict in that repository or a key changes (Topic.VERDICTS, keyed by repository);
    verdicts only read, never computed here."""
    from dockyard.projects.pull_policies import PullPolicies, PullPolicy
    from dockyard.signatures.pull_gate import PullGate

    policies = PullPolicies(
        db,
        GenerationCache[str, PullPolicy](generation_of(feed, Topic.POLICIES), MIB),
        lambda: feed.bump(Topic.POLICIES),
    )
    decisions = KeyedGenerationCache[tuple[str, str, PullPolicy], str](
        keyed_generation_of(feed, Topic.VERDICTS), 4 * MIB, clock=time.monotonic
    )
    # Stored scan summaries (one indexed row each); a stored result bumps Topic.VERDICTS with its
    # repository (_scan_kind).
    return PullGate(db, policies, _StoredVerdicts(db, registry, blobs), decisions, _StoredSummaries(db))


class _BuiltOnFirstUse:
    """A service built by `build` on its first use, once, whatever threads ask at the same time: the
    pull gate's stored signature verdicts and scan summaries, whose modules (cryptography's parsers,
    ~10 MiB; the scans' services and models, ~20 ms of CPU to import) a process that never judges such
    a pull (the job runner; a registry without those policies; serve before its fork) never loads."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._built: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
        return self._built


class _StoredVerdicts:
    """The pull gate's stored signature verdicts (`Signatures.cached`), built on the first pull it judges."""

    def __init__(self, db: Database, registry: Registry, blobs: BlobStore) -> None:
        def build() -> Any:
            from dockyard.signatures.services import Signatures

            return Signatures(db, registry, blobs)

        self._signatures = _BuiltOnFirstUse(build)

    def cached(self, repository: str, digest: str) -> Any:
        return self._signatures.get().cached(repository, digest)


class _StoredSummaries:
    """The pull gate's stored scan summaries (`Scans.summary`), built on the first pull a vulnerability
    policy judges."""

    def __init__(self, db: Database) -> None:
        def build() -> Any:
            from dockyard.scans.services import Scans

            return Scans(db)

        self._scans = _BuiltOnFirstUse(build)

    def summary(self, repository: str, digest: str) -> Any:
        return self._scans.get().summary(repository, digest)


def build_outbox(
    settings: Settings, db: Database, jobs: JobQueue, policies: WebhookPolicies | None = None
) -> Outbox | None:
    """The notification outbox when an endpoint is enabled or webhook policies may exist. registry:2's
    `source` of each event names this node (host:port) and this process (a fresh instance id)."""
    if not settings.notifications.active and policies is None:
        return None
    from dockyard.webhooks.services import Outbox

    source = {"addr": f"{socket.gethostname()}:{settings.http.bind_port}", "instanceID": str(uuid.uuid4())}
    return Outbox(db, jobs, source, settings.notifications.active, policies)


def build_webhook_policies(settings: Settings, db: Database, feed: ChangeFeed) -> WebhookPolicies:
    """Per-project webhook policies: what each project wants cached like quota limits (Topic.POLICIES);
    secrets sealed like endpoint credentials (build_endpoints), the sealer built on first use."""
    from dockyard.upstream.addresses import AddressGuard
    from dockyard.webhooks.policies import WebhookPolicies

    @functools.cache
    def sealer() -> Any:
        from dockyard.endpoints.secrets import SecretBox

        passphrase, older = signing_key_passphrases(settings)
        return SecretBox(passphrase, older)

    wanted = GenerationCache[str, frozenset[str]](generation_of(feed, Topic.POLICIES), MIB)
    guard = AddressGuard(settings.upstream.allowed_networks)
    return WebhookPolicies(db, sealer, wanted, lambda: feed.bump(Topic.POLICIES), guard.permits)


def build_quotas(
    db: Database, feed: ChangeFeed, audit: AuditRecorder | None = None, events: ProjectEvents | None = None
) -> Quotas:
    """Project quotas: limits cached per process until a change anywhere bumps Topic.POLICIES (a
    deleted project's go with it); crossing a warning threshold is recorded in `audit`."""
    limits = GenerationCache[str, CachedLimit](generation_of(feed, Topic.POLICIES), MIB)
    return Quotas(db, audit, limits, lambda: feed.bump(Topic.POLICIES), events)


def build_immutability(
    db: Database, feed: ChangeFeed, events: ProjectEvents | None = None
) -> ImmutabilityRules:
    """Projects' immutable-tag rules, cached like quota limits (Topic.POLICIES)."""
    rules = GenerationCache[str, tuple[ImmutableRule, ...]](generation_of(feed, Topic.POLICIES), MIB)
    return ImmutabilityRules(db, rules, lambda: feed.bump(Topic.POLICIES), events)


def job_kinds(services: Services, gc_metrics: GCMetrics | None = None) -> list[JobKind]:
    """Every kind of background job (JOB_KINDS), with its handler bound to the services it needs: what
    a job runner runs. Other processes only need the names."""
    metrics = gc_metrics or GCMetrics()
    kinds = []
    for name, build in JOB_KINDS.items():
        kind = build(services, metrics)
        if kind.name != name:  # the queue would take jobs of a name no runner runs
            raise RuntimeError(f"JOB_KINDS[{name!r}] builds a kind named {kind.name!r}")
        kinds.append(kind)
    return kinds


def build_job_runner(services: Services, node: str | None = None) -> JobRunner:
    """The runner `dockyard worker` (or the worker `serve` starts) and `dockyard garbage-collect` use."""
    from dockyard.jobs.runner import JobRunner  # the job runner's code: only where jobs run

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


def _purge_uploads_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
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


def _selftest_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.jobs.tasks import selftest_kind

    return selftest_kind()


def _gc_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.gc.tasks import gc_kind

    return gc_kind(services.db, services.driver, services.feed, gc_metrics)


def _notify_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.observability.metrics import WebhookMetrics
    from dockyard.webhooks.tasks import notify_kind

    settings = services.settings
    return notify_kind(
        services.db,
        services.jobs,
        settings.notifications,
        settings.upstream.allowed_networks,
        policies=services.webhook_policies,
        webhooks=settings.webhooks,
        source=registry_url(settings),
        observe=WebhookMetrics(gc_metrics.registry).observe,
    )


def registry_url(settings: Settings) -> str:
    """The registry's URL as webhooks name it (http.host, else this node's name and port)."""
    if settings.http.host:
        return settings.http.host.rstrip("/")
    scheme = "https" if settings.http.tls.certificate else "http"
    return f"{scheme}://{socket.gethostname()}:{settings.http.bind_port}"


def _retention_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.retention.tasks import retention_kind

    sink = services.project_events

    def finished(project: str, summary: dict[str, Any]) -> None:
        if sink is not None:
            sink.record(project, "retention_run", summary)

    return retention_kind(
        services.db, services.registry, services.immutability, services.audit, on_finished=finished
    )


def _verify_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.signatures.tasks import verify_kind

    return verify_kind(services.db, services.registry, services.blobs, services.verdicts_changed)


def _scan_remote_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    """Another registry's artifact, for the scanner API (scans/remote.py)."""
    from dockyard.scans.remote import scan_remote_kind
    from dockyard.upstream.addresses import AddressGuard
    from dockyard.upstream.interfaces import Timeouts

    settings = services.settings
    upstream = settings.upstream

    @functools.cache
    def box() -> SecretBox:
        from dockyard.endpoints.secrets import SecretBox

        passphrase, older = signing_key_passphrases(settings)
        return SecretBox(passphrase, older)

    timeouts = Timeouts(
        upstream.connect_timeout.seconds, upstream.read_timeout.seconds, upstream.total_timeout.seconds
    )
    return scan_remote_kind(services.db, box, AddressGuard(upstream.allowed_networks), timeouts)


def _sbom_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.scanning.tasks import sbom_kind

    return sbom_kind(services.registry, services.blobs, services.blob_uploads)


def _scan_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.scans.tasks import scan_kind

    kind = scan_kind(
        services.db, services.registry, services.blobs, services.verdicts_changed, _adapters(services)
    )
    sink = services.project_events
    metrics = ScanMetrics(gc_metrics.registry)
    scan = kind.handler
    base = registry_url(services.settings)

    def scan_and_tell(ctx: JobContext) -> Any:
        """A scan of one artifact is a `scan_finished` event of its project (not the rescans a
        vulnerability-database import queues: their results are in the job's result); every stored
        result is counted (scans_total{status})."""
        result = scan(ctx)
        if isinstance(result, dict):
            metrics.observe(result)
        if sink is not None and isinstance(result, dict) and "repository" in result and "digest" in result:
            data = {key: result.get(key) for key in ("repository", "digest", "status", "reason", "counts")}
            # As registry:2 events name a manifest: where clients reach it (the resource_url's host).
            data["url"] = f"{base}/v2/{result['repository']}/manifests/{result['digest']}"
            sink.record(project_of(str(result["repository"])), "scan_finished", data)
        return result

    return dataclasses.replace(kind, handler=scan_and_tell)


def _adapters(services: Services) -> Callable[[], Adapters]:
    """External scanners for the scan jobs, built when a job first uses one (httpx, the token service):
    their secrets opened with the key endpoints' are sealed with, their connections behind the upstream
    address guard, and, with dockyard's own auth, pull tokens minted with the registry's token signing
    keys (scans/adapters.py)."""
    settings, db, feed = services.settings, services.db, services.feed

    @functools.cache
    def build() -> Adapters:
        from dockyard.auth.tokens import KeyRing, TokenService
        from dockyard.endpoints.secrets import SecretBox
        from dockyard.scans.adapters import Adapters
        from dockyard.upstream.addresses import AddressGuard

        passphrase, older = signing_key_passphrases(settings)
        box = SecretBox(passphrase, older)
        tokens = None
        if auth_mode(settings) == "dockyard":
            token = settings.auth.token

            def tokens(lifetime: float) -> TokenService:
                keys = KeyRing(db, passphrase=passphrase, older_passphrases=older)
                return TokenService(keys, issuer=token.issuer, service=token.service, lifetime=lifetime)

        guard = AddressGuard(settings.upstream.allowed_networks)
        return Adapters(
            db, lambda: box, guard, registry_url(settings), tokens, lambda: feed.bump(Topic.AUTH),
            audit=services.audit,
        )

    return build


def _replicate_kind(services: Services, gc_metrics: GCMetrics) -> JobKind:
    from dockyard.observability.metrics import ReplicationMetrics
    from dockyard.replication.tasks import replicate_kind

    sink = services.project_events

    def finished(policy: Any, run: Any) -> None:
        from dockyard.replication.events import finished_events

        if sink is not None:
            for project, data in finished_events(policy, run).items():
                sink.record(project, "replication_finished", data)

    return replicate_kind(
        services.db,
        services.registry,
        services.blob_uploads,
        services.blobs,
        build_endpoints(services.settings, services.db),
        observe=ReplicationMetrics(gc_metrics.registry).observe,
        on_finished=finished,
    )


# Every kind of background job, by name, with how its handler is built (each package's `tasks.py`
# has it). The queue of every process knows the names (it refuses others); only a job runner builds
# the handlers (`job_kinds`), so only it loads their code. One line per kind: a feature adds its own.
JOB_KINDS: dict[str, Callable[[Services, GCMetrics], JobKind]] = {
    "purge-uploads": _purge_uploads_kind,
    "selftest": _selftest_kind,
    "gc": _gc_kind,
    "retention": _retention_kind,
    "notify": _notify_kind,
    "sbom": _sbom_kind,
    "verify-signature": _verify_kind,
    "scan": _scan_kind,
    "scan-remote": _scan_remote_kind,
    "replicate": _replicate_kind,
}


def tune_malloc() -> None:
    """Return big buffers to the OS when freed, keep the rest. glibc's default raises its mmap threshold
    after the first large free, so later large allocations (argon2's block) come from per-thread arenas
    that keep the memory: a worker grew past 600 MiB issuing tokens. A fixed threshold above the pieces
    of request bodies the server hands over (up to about 400 KiB each) keeps those off mmap: at 256 KiB
    every piece was a fresh mapping, faulted in page by page and unmapped again, a quarter of a push's
    CPU. The trim threshold lets an arena keep a few MiB free at its top for the next pieces.
    Two arenas, not glibc's 8 per core: each thread that allocates sticks to an arena, and each arena
    keeps its own free memory (and those few MiB); with 4, a worker kept 3-5 MiB more after a load of
    pushes, pulls and logins, and two cores gain nothing from more (docs/benchmarks.md, "Memory")."""
    with contextlib.suppress(OSError, AttributeError):
        libc = c_library()
        libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * 1024 * 1024)
        libc.mallopt(_M_ARENA_MAX, ARENAS)


# --- authentication: the mode, the shared secrets, the first administrator --------------------------
# Used at start (serve's first-start child, each HTTP worker) without the web stack; the gate, /token
# and the management API are wired from these in `app`.


# --- registry endpoints ------------------------------------------------------------------------------
def build_endpoints(settings: Settings, db: Database) -> Callable[[], EndpointService]:
    """The registry endpoints service, built on the first call (it loads httpx and cryptography, which
    an HTTP worker that never manages endpoints does without). Credentials are sealed under a key
    derived from the token signing keys' passphrase (http.secret or the datadir's), never in the DB."""

    @functools.cache
    def build() -> EndpointService:
        from dockyard.endpoints.secrets import SecretBox
        from dockyard.endpoints.services import EndpointService
        from dockyard.upstream.addresses import AddressGuard
        from dockyard.upstream.interfaces import Timeouts

        passphrase, older = signing_key_passphrases(settings)
        upstream = settings.upstream
        timeouts = Timeouts(
            upstream.connect_timeout.seconds, upstream.read_timeout.seconds, upstream.total_timeout.seconds
        )
        guard = AddressGuard(upstream.allowed_networks)
        return EndpointService(db, SecretBox(passphrase, older), guard, timeouts)

    return build


# --- mirror modes of the pull-through cache ----------------------------------------------------------
def implicit_proxy(settings: Settings) -> ProxyConfig | None:
    """registry:2's `proxy:` section as a proxy project of every repository (None when unset)."""
    proxy = settings.proxy
    if not proxy.remoteurl:
        return None  # before the imports: an HTTP worker without a proxy loads no upstream client
    from urllib.parse import urlsplit

    from dockyard.endpoints.services import DOCKER_HUB_HOSTS
    from dockyard.proxy.interfaces import IMPLICIT_ENDPOINT, ProxyConfig

    host = (urlsplit(proxy.remoteurl).hostname or "").lower()
    docker_hub = host in DOCKER_HUB_HOSTS or host == "registry-1.docker.io"
    return ProxyConfig("", 0, IMPLICIT_ENDPOINT, docker_hub, int(proxy.tag_ttl.seconds))


def implicit_remote(settings: Settings) -> Callable[[], RemoteRegistry] | None:
    """The upstream client of `proxy.remoteurl`, behind the same address guard and timeouts as any
    endpoint's (built on first use)."""
    proxy = settings.proxy
    if not proxy.remoteurl:
        return None
    url = proxy.remoteurl

    def build() -> RemoteRegistry:
        from dockyard.upstream.addresses import AddressGuard
        from dockyard.upstream.client import HttpRemoteRegistry
        from dockyard.upstream.interfaces import Credentials, Timeouts

        upstream = settings.upstream
        timeouts = Timeouts(
            upstream.connect_timeout.seconds, upstream.read_timeout.seconds, upstream.total_timeout.seconds
        )
        credentials = Credentials("basic", proxy.username, proxy.password or "") if proxy.username else None
        guard = AddressGuard(upstream.allowed_networks)
        return HttpRemoteRegistry(url, credentials, guard=guard, timeouts=timeouts)

    return build
