"""registry:2 notification events of /v2 requests, built here (the request is known here) and appended
to the outbox before the response leaves (`ctx.notifications`), so an answered push is never lost.

Pushes and deletes of manifests and blobs, and cross-repository mounts, as registry:2 sends them. Pulls
(manifest and blob GETs) go through an in-memory batch instead (`ctx.pull_notifications`,
webhooks/pulls.py): a database write per pull would be the hottest path's only write.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from dockyard.api.middleware import REQUEST_ID_KEY
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.gate import PRINCIPAL_KEY
from dockyard.auth.interfaces import Principal
from dockyard.webhooks.interfaces import LAYER_MEDIA_TYPE, Event, RequestInfo


def _request_info(request: Request) -> RequestInfo:
    scope = request.scope
    client = scope.get("client")
    headers = request.headers
    return RequestInfo(
        id=str(scope.get(REQUEST_ID_KEY) or ""),
        addr=f"{client[0]}:{client[1]}" if client else "",
        host=headers.get("host", ""),
        method=scope["method"],
        useragent=headers.get("user-agent", ""),
    )


def _actor(request: Request) -> str:
    principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
    return principal.name if principal is not None and principal.name != "anonymous" else ""


async def _record(
    ctx: OCIContext, request: Request, action: str, target: dict[str, Any], project: str | None = None
) -> None:
    assert ctx.notifications is not None
    event = Event(action, target, _request_info(request), _actor(request), project=project)
    await ctx.call(ctx.notifications.record, [event])


async def _manifest_event(ctx: OCIContext, action: str, name: str) -> tuple[bool, str | None]:
    """Whether to record a manifest event, and the project whose webhook policies want it. The
    project's policies are cached; reading them (the first event after a policy change) is done in a
    worker thread, not on the event loop."""
    outbox = ctx.notifications
    if outbox is None:
        return False, None
    if outbox.policies_known(name):
        project = outbox.project_wanting(action, name)
    else:
        project = await ctx.call(outbox.project_wanting, action, name)
    return project is not None or outbox.wants_endpoint(action), project


def _blob_event(ctx: OCIContext, action: str) -> bool:
    """Blob events go to registry:2 endpoints only (webhook policies are sent artifacts)."""
    return ctx.notifications is not None and ctx.notifications.wants_endpoint(action)


def _content_target(
    ctx: OCIContext, name: str, kind: str, digest: str, media_type: str, size: int
) -> dict[str, Any]:
    """registry:2's target of a manifest (`kind` "manifests") or blob ("blobs") event."""
    return {
        "mediaType": media_type,
        "size": size,
        "digest": digest,
        "length": size,
        "repository": name,
        "url": ctx.url(f"/v2/{name}/{kind}/{digest}"),
    }


def _is_tag(reference: str) -> bool:
    return ":" not in reference  # tags have no colon, digests do: no parsing on the hot path


async def manifest_pushed(
    ctx: OCIContext, request: Request, name: str, reference: str, digest: str, media_type: str, size: int
) -> None:
    wanted, project = await _manifest_event(ctx, "push", name)
    if not wanted:
        return
    target = _content_target(ctx, name, "manifests", digest, media_type, size)
    if _is_tag(reference):
        target["tag"] = reference
    await _record(ctx, request, "push", target, project)


async def manifest_deleted(ctx: OCIContext, request: Request, name: str, reference: str) -> None:
    wanted, project = await _manifest_event(ctx, "delete", name)
    if not wanted:
        return
    # registry:2: a manifest delete names the digest; a tag delete (distribution v3) names the tag.
    target: dict[str, Any] = {"repository": name, "tag" if _is_tag(reference) else "digest": reference}
    if project is not None:  # where a Harbor consumer finds the registry (registry:2's target has no url)
        target["url"] = ctx.url(f"/v2/{name}/manifests/{reference}")
    await _record(ctx, request, "delete", target, project)


async def blob_pushed(
    ctx: OCIContext, request: Request, name: str, digest: str, size: int, mounted_from: str | None = None
) -> None:
    if not _blob_event(ctx, "mount" if mounted_from is not None else "push"):
        return
    target = _content_target(ctx, name, "blobs", digest, LAYER_MEDIA_TYPE, size)
    if mounted_from:  # "" for a mount without `from=`: the source is not named
        target["fromRepository"] = mounted_from
    await _record(ctx, request, "mount" if mounted_from is not None else "push", target)


async def blob_deleted(ctx: OCIContext, request: Request, name: str, digest: str) -> None:
    if not _blob_event(ctx, "delete"):
        return
    await _record(ctx, request, "delete", {"digest": digest, "repository": name})


async def manifest_pulled(
    ctx: OCIContext, request: Request, name: str, reference: str, digest: str, media_type: str, size: int
) -> None:
    """No I/O once the project's webhook policies are cached: the event joins the next batch."""
    if ctx.pull_notifications is None:
        return
    wanted, project = await _manifest_event(ctx, "pull", name)
    if not wanted:
        return
    target = _content_target(ctx, name, "manifests", digest, media_type, size)
    if _is_tag(reference):
        target["tag"] = reference
    event = Event("pull", target, _request_info(request), _actor(request), project=project)
    ctx.pull_notifications.note(event)


def blob_pulled(ctx: OCIContext, request: Request, name: str, digest: str, size: int) -> None:
    if ctx.pull_notifications is None or not _blob_event(ctx, "pull"):
        return
    target = _content_target(ctx, name, "blobs", digest, LAYER_MEDIA_TYPE, size)
    ctx.pull_notifications.note(Event("pull", target, _request_info(request), _actor(request)))
