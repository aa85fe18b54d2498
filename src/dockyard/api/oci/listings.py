"""Listing endpoints: /v2/, /v2/_catalog, tags list and referrers."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.numbers import parse_decimal
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import API_VERSION_HEADER
from dockyard.api.oci.gate import PRINCIPAL_KEY
from dockyard.api.oci.responses import PreparedResponse, RawHeaders, encode_headers
from dockyard.content import mediatypes
from dockyard.content.digest import parse_digest
from dockyard.content.reference import validate_name
from dockyard.errors import PaginationInvalid
from dockyard.registry.interfaces import Page

_rendered: dict[int, tuple[Page, bytes, RawHeaders]] = {}
_RENDERED_MAX_BYTES = 8 << 20  # rendered bodies kept per process (a 10,000-tag page is ~150 KiB)
_rendered_bytes = 0
# Unbounded listings could be huge; clients that want everything follow the Link header.
MAX_PAGE = 10_000
JSON = "application/json"


async def base(ctx: OCIContext, request: Request) -> Response:
    return Response(b"{}", headers=API_VERSION_HEADER, media_type=JSON)


def _pagination(request: Request) -> tuple[int | None, str | None]:
    raw = request.query_params.get("n")
    limit: int | None = None
    if raw is not None and raw != "":
        number = parse_decimal(raw)
        if number is None:
            raise PaginationInvalid(detail={"n": raw})
        limit = min(number, MAX_PAGE)
    last = request.query_params.get("last") or None
    return limit, last


def _paged_response(path: str, key: str, body: dict[str, object], page: Page, limit: int | None) -> Response:
    # Cached pages are the same objects until a change invalidates them: render each once.
    rendered = _rendered.get(id(page))
    if rendered is not None and rendered[0] is page:
        return PreparedResponse(rendered[1], rendered[2])
    headers = {**API_VERSION_HEADER, "Content-Type": JSON}
    if page.more and page.items:
        query = urlencode({"n": limit if limit is not None else MAX_PAGE, "last": page.items[-1]})
        headers["Link"] = f'<{path}?{query}>; rel="next"'
    body[key] = list(page.items)
    content = json.dumps(body).encode()
    headers["Content-Length"] = str(len(content))
    global _rendered_bytes
    if _rendered_bytes + len(content) > _RENDERED_MAX_BYTES:
        _rendered.clear()
        _rendered_bytes = 0
    _rendered_bytes += len(content)
    raw = encode_headers(headers)
    _rendered[id(page)] = (page, content, raw)
    return PreparedResponse(content, raw)


async def catalog(ctx: OCIContext, request: Request) -> Response:
    limit, last = _pagination(request)
    effective = MAX_PAGE if limit is None else limit
    projects: frozenset[str] | None = None
    principal = request.scope.get(PRINCIPAL_KEY)
    if ctx.visible_projects is not None and principal is not None:
        projects = await ctx.call(ctx.visible_projects, principal)
    key = None if projects is None else ",".join(sorted(projects))
    page = ctx.registry.cached_listing(("catalog", key, effective, last))
    if page is None:
        page = await ctx.call(ctx.registry.catalog, effective, last, projects)
    return _paged_response("/v2/_catalog", "repositories", {}, page, effective)


async def tags_list(ctx: OCIContext, request: Request, name: str) -> Response:
    limit, last = _pagination(request)
    effective = MAX_PAGE if limit is None else limit
    page = ctx.registry.cached_listing(("tags", name, effective, last))
    if page is None:
        page = await ctx.call(ctx.registry.list_tags, name, effective, last)
    return _paged_response(f"/v2/{name}/tags/list", "tags", {"name": name}, page, effective)


async def referrers(ctx: OCIContext, request: Request, name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    artifact_type = request.query_params.get("artifactType") or None
    listing = await ctx.call(ctx.registry.referrers, name, digest, artifact_type)
    headers = dict(API_VERSION_HEADER)
    if listing.filtered_by_artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": list(listing.descriptors)}
    return Response(json.dumps(body).encode(), headers=headers, media_type=mediatypes.OCI_INDEX)
