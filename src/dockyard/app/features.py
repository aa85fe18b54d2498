"""What the /v2 edge adds per feature, built from Settings: request and upload limits, proxy projects
(the pull-through cache) and mirror mode, what follows a manifest push, the Harbor scanner API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from dockyard.api.manifest_effects import ManifestEffects
from dockyard.api.oci.limits import ClientKeys, RequestLimits
from dockyard.api.oci.proxying import ProxyEdge
from dockyard.api.oci.upload_limits import UploadLimits
from dockyard.app.housekeeping import build_locks

# The composition without HTTP lives in dockyard.services (the job runner builds it without the web
# stack); these names stay importable from here too.
from dockyard.bootstrap import (
    signing_key_passphrases,
)
from dockyard.config.settings import Settings
from dockyard.coordination.buckets import InProcessBuckets
from dockyard.coordination.interfaces import Slots, TokenBuckets
from dockyard.coordination.slots import FileSlots
from dockyard.observability.metrics import Metrics
from dockyard.proxy.cache import ProxyCache
from dockyard.proxy.interfaces import Outcome
from dockyard.proxy.mirrors import Mirrors
from dockyard.proxy.services import ProxyProjects, RemoteClients
from dockyard.services import (
    Services,
    build_endpoints,
    implicit_proxy,
    implicit_remote,
    registry_url,
)

if TYPE_CHECKING:
    from dockyard.replication.services import ReplicationPolicies
    from dockyard.scans.services import Scans


def build_limits(settings: Settings, metrics: Metrics) -> tuple[RequestLimits | None, UploadLimits | None]:
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


def scanner_api_route(services: Services) -> BaseRoute:
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


def manifest_effects(services: Services) -> ManifestEffects:
    """What follows a manifest push or delete over either API: registry:2 and webhook events, the
    signature check of a project that requires signatures, scan on push (a `scan` job for a project
    with `scan_on_push`), replication's event trigger (a `replicate` job per event policy selecting
    the tag). The services behind the last two (with their models) are built on the first push that
    needs them, in the worker that takes it: a registry that is only pulled from never loads them."""
    from dockyard.replication.pushes import ReplicateOnPush
    from dockyard.scans.pushes import ScanOnPush

    def scans() -> Scans:
        from dockyard.scans.services import Scans

        return Scans(services.db, jobs=services.jobs)

    def replication_policies() -> ReplicationPolicies:
        from dockyard.replication.services import ReplicationPolicies

        return ReplicationPolicies(services.db)

    return ManifestEffects(
        notifications=services.notifications,
        pull_gate=services.pull_gate,
        scans=ScanOnPush(scans),
        replication=ReplicateOnPush(
            replication_policies,
            services.jobs,
            ttl=services.settings.replication.event_policies_ttl.seconds,
        ),
        base_url=(services.settings.http.host or "").rstrip("/"),
    )


def proxy_edge(services: Services, metrics: Metrics) -> tuple[ProxyEdge, Callable[[], None]]:
    """Proxy projects (the pull-through cache): their fetch locks are cluster-wide through Redis when
    configured, else shared by this node's workers. With the function that closes its clients."""
    settings = services.settings
    locks, close_locks = build_locks(settings, free_dead_holders=True)  # a killed fetch holds up nobody
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
