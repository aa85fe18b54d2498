"""/v2 reads of proxy projects (the pull-through cache, `dockyard.proxy`): manifests and blobs the
cache holds are served as any others; what it does not hold (or a tag past its TTL) goes through
`ProxyCache` in a worker thread. Pushes into a proxy project are refused here, at the router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Scope

from dockyard.api.oci.gate import PRINCIPAL_KEY
from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditRecorder, ResourceType
from dockyard.auth.interfaces import ANONYMOUS, Principal
from dockyard.proxy.cache import BUSY, LOCK_POLL, ProxyCache, Served, UpstreamBlob
from dockyard.proxy.interfaces import MirrorPushUnsupported, Outcome, ProxyConfig, ProxyPushDenied
from dockyard.proxy.mirrors import UNKNOWN, Mirrors
from dockyard.proxy.services import ProxyProjects
from dockyard.registry.interfaces import ManifestRecord

Call = Callable[..., Awaitable[Any]]  # OCIContext.call: run a synchronous function in a worker thread

# The /v2 routes and methods that write into a repository.
PUSHES = frozenset({("upload_start", "POST"), ("upload", "PATCH"), ("upload", "PUT"), ("manifests", "PUT")})


@dataclass
class ProxyEdge:
    projects: ProxyProjects
    cache: ProxyCache
    audit: AuditRecorder | None = None
    mirrors: Mirrors | None = None  # proxy.namespaces: containerd's ?ns=, docker's registry-mirrors


async def mirror_name(
    edge: ProxyEdge, key: str, method: str, name: str, query_string: bytes, call: Call
) -> str:
    """The name a request is served as: a mirror request's is inside its proxy project."""
    mirrors = edge.mirrors
    if mirrors is None:
        return name
    answer = mirrors.rename_now(key, method, name, query_string)
    if answer is UNKNOWN:
        answer = await call(mirrors.rename, key, method, name, query_string)
    return name if answer is None else answer


async def proxy_of(edge: ProxyEdge, name: str, call: Call) -> ProxyConfig | None:
    """The proxy project serving `name` (None: an ordinary repository)."""
    answer = edge.projects.serving_now(name)
    if not edge.projects.known(answer):
        answer = await call(edge.projects.serving, name)
    return answer


async def refuse_push(edge: ProxyEdge, key: str, method: str, name: str, call: Call) -> None:
    if (key, method) in PUSHES and (config := await proxy_of(edge, name, call)) is not None:
        raise MirrorPushUnsupported() if config.whole_registry else ProxyPushDenied()


def audit_fetch(
    edge: ProxyEdge,
    scope: Scope,
    config: ProxyConfig,
    kind: ResourceType,
    name: str,
    ref: str,
    upstream: str,
    outcome: Outcome,
    error: str | None = None,
) -> None:
    """What was fetched from upstream (or served stale) for whom: an audit event (cache hits are
    ordinary pulls, counted as those are)."""
    if edge.audit is None or outcome in (Outcome.HIT, Outcome.REVALIDATED):
        return
    principal: Principal = scope.get(PRINCIPAL_KEY) or ANONYMOUS
    client = scope.get("client")
    separator = "@" if ":" in ref else ":"
    detail = {"proxy": outcome.value, "endpoint": config.endpoint, "upstream": upstream}
    if error:
        detail["error"] = error[:500]
    edge.audit.record(
        AuditEvent(
            action=AuditAction.PULL,
            actor=principal.name,
            actor_kind=ActorKind(principal.kind.value),
            resource_type=kind,
            resource_name=f"{name}{separator}{ref}",
            client_ip=client[0] if client else None,
            detail=detail,
        )
    )


async def manifest(
    edge: ProxyEdge, request: Request, config: ProxyConfig, name: str, reference: str, call: Call
) -> ManifestRecord:
    record = edge.cache.fresh(name, reference)  # no I/O: a fresh tag, or a digest in the registry's cache
    if record is not None:
        return record
    served: Served = await call(edge.cache.manifest, config, name, reference)
    if request.method == "GET" or served.outcome is not Outcome.HIT:
        audit_fetch(
            edge,
            request.scope,
            config,
            ResourceType.ARTIFACT,
            name,
            reference,
            served.upstream,
            served.outcome,
            served.error,
        )
    return served.record


async def open_blob(
    edge: ProxyEdge, config: ProxyConfig, name: str, digest: str, call: Call
) -> UpstreamBlob | None:
    """None when the blob is in the repository (now); else this request's fetch from upstream. While
    another request fetches it, wait on the event loop (not in a thread: the fetch needs them)."""
    while True:
        fetch = await call(edge.cache.open_blob, config, name, digest)
        if fetch is not BUSY:
            return fetch
        await anyio.sleep(LOCK_POLL)


def blob_response(
    edge: ProxyEdge,
    request: Request,
    config: ProxyConfig,
    name: str,
    digest: str,
    fetch: UpstreamBlob,
    headers: dict[str, str],
    io_call: Call,
) -> StreamingResponse:
    """The blob as it arrives from upstream (see ProxyCache.open_blob)."""
    audit_fetch(edge, request.scope, config, ResourceType.BLOB, name, digest, fetch.upstream, Outcome.FETCHED)
    return StreamingResponse(_relay(fetch, io_call), headers=headers, media_type="application/octet-stream")


async def _relay(fetch: UpstreamBlob, call: Call) -> AsyncIterator[bytes]:
    try:
        while True:
            batch: list[bytes] = await call(fetch.take)  # one thread hop for what is queued
            if not batch:
                return
            for chunk in batch:
                yield chunk
    finally:
        # The client went away (or the fetch failed): stop it; nothing unverified is recorded. Shielded:
        # a cancelled response must still end its fetch (the lock, the upload session).
        with anyio.CancelScope(shield=True):
            await call(fetch.close)
