"""registry:2 notification events of /v2 requests, built here (the request is known here) and appended
to the outbox before the response leaves (`ctx.notifications`), so an answered push is never lost.

Blob pushes, deletes and cross-repository mounts, as registry:2 sends them; manifest pushes and deletes
go with everything else that follows them (api/manifest_effects.py, shared with the management API).
Pulls (manifest and blob GETs) go through an in-memory batch instead (`ctx.pull_notifications`,
webhooks/pulls.py): a database write per pull would be the hottest path's only write.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from dockyard.api.manifest_effects import actor_name, blob_target, content_target, is_tag, request_info
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.gate import PRINCIPAL_KEY
from dockyard.webhooks.interfaces import Event


def actor_of(request: Request) -> str:
    return actor_name(request.scope.get(PRINCIPAL_KEY))


async def _record(ctx: OCIContext, request: Request, action: str, target: dict[str, Any]) -> None:
    assert ctx.notifications is not None
    event = Event(action, target, request_info(request), actor_of(request))
    await ctx.call(ctx.notifications.record, [event])


async def _manifest_event(ctx: OCIContext, action: str, name: str) -> tuple[bool, str | None]:
    """Whether to record a manifest event, and the project whose webhook policies want it. The
    project's policies are cached; reading them (the first event after a policy change) is done in a
    worker thread, not on the event loop."""
    outbox = ctx.notifications
    if outbox is None:
        return False, None
    known, project = outbox.project_wanting_now(action, name)
    if not known:
        project = await ctx.call(outbox.project_wanting, action, name)
    return project is not None or outbox.wants_endpoint(action), project


def _blob_event(ctx: OCIContext, action: str) -> bool:
    """Blob events go to registry:2 endpoints only (webhook policies are sent artifacts)."""
    return ctx.notifications is not None and ctx.notifications.wants_endpoint(action)


async def blob_pushed(
    ctx: OCIContext, request: Request, name: str, digest: str, size: int, mounted_from: str | None = None
) -> None:
    if not _blob_event(ctx, "mount" if mounted_from is not None else "push"):
        return
    target = blob_target(ctx.url(f"/v2/{name}/blobs/{digest}"), name, digest, size)
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
    target = content_target(ctx.url(f"/v2/{name}/manifests/{digest}"), name, digest, media_type, size)
    if is_tag(reference):
        target["tag"] = reference
    event = Event("pull", target, request_info(request), actor_of(request), project=project)
    ctx.pull_notifications.note(event)


def blob_pulled(ctx: OCIContext, request: Request, name: str, digest: str, size: int) -> None:
    if ctx.pull_notifications is None or not _blob_event(ctx, "pull"):
        return
    target = blob_target(ctx.url(f"/v2/{name}/blobs/{digest}"), name, digest, size)
    ctx.pull_notifications.note(Event("pull", target, request_info(request), actor_of(request)))
