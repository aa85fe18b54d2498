"""The /v2 route table (OCI Distribution Spec v1.1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.api.oci import blobs, listings, manifests, uploads
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import error_response, render_error

Handler = Callable[..., Awaitable[Response]]
Handlers = Mapping[str, Handler]


def _endpoint(ctx: OCIContext, handlers: Handlers, params: tuple[str, ...]) -> Any:
    allowed = ", ".join(sorted(handlers))

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None:
            return error_response(
                "UNSUPPORTED", f"{request.method} is not supported here", 405, headers={"Allow": allowed}
            )
        path_params = request.path_params
        if b"%2" in request.scope.get("raw_path", b"") and _encoded_separator(request):
            return error_response("NAME_INVALID", "percent-encoded '/' or '.' is not allowed in names", 400)
        try:
            return await handler(ctx, request, *[path_params[p] for p in params])
        except Exception as exc:  # every error leaves as an OCI error body
            return render_error(exc)

    return endpoint


def _encoded_separator(request: Request) -> bool:
    """Names must be spelled literally: an encoded '/' or '.' could smuggle path segments."""
    raw = request.scope["raw_path"].split(b"?", 1)[0].lower()
    return b"%2f" in raw or b"%2e" in raw


def oci_routes(ctx: OCIContext) -> list[Route]:
    def route(path: str, handlers: Handlers, *params: str) -> Route:
        methods = [*handlers, "GET"] if handlers else None  # let our endpoint answer 405 itself
        return Route(path, _endpoint(ctx, handlers, params), methods=methods, name=path)

    upload_start = {"POST": uploads.start_upload}
    upload = {
        "GET": uploads.upload_status,
        "PATCH": uploads.patch_upload,
        "PUT": uploads.finish_upload,
        "DELETE": uploads.cancel_upload,
    }
    blob = {"GET": blobs.get_blob, "HEAD": blobs.head_blob, "DELETE": blobs.delete_blob}
    manifest = {
        "GET": manifests.get_manifest,
        "HEAD": manifests.head_manifest,
        "PUT": manifests.put_manifest,
        "DELETE": manifests.delete_manifest,
    }
    return [
        route("/v2/", {"GET": listings.base, "HEAD": listings.base}),
        route("/v2/_catalog", {"GET": listings.catalog}),
        route("/v2/{name:path}/blobs/uploads/", upload_start, "name"),
        route("/v2/{name:path}/blobs/uploads", upload_start, "name"),
        route("/v2/{name:path}/blobs/uploads/{upload_id}", upload, "name", "upload_id"),
        route("/v2/{name:path}/blobs/{digest}", blob, "name", "digest"),
        route("/v2/{name:path}/manifests/{reference}", manifest, "name", "reference"),
        route("/v2/{name:path}/tags/list", {"GET": listings.tags_list}, "name"),
        route("/v2/{name:path}/referrers/{digest}", {"GET": listings.referrers}, "name", "digest"),
    ]
