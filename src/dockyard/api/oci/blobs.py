"""Blob endpoints: GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from dockyard.api.numbers import parse_decimal
from dockyard.api.oci import proxying
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import API_VERSION_HEADER, render_error
from dockyard.api.oci.file_ranges import FileRangeResponse
from dockyard.api.oci.notifying import blob_deleted, blob_pulled
from dockyard.api.oci.responses import PreparedResponse, RawHeaders, encode_headers
from dockyard.content.digest import parse_digest
from dockyard.content.reference import validate_name
from dockyard.errors import BlobUnknown, RangeInvalid

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")  # ASCII digits: \d would take any script's
_READ_CHUNK = 1024 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as (start, end-exclusive); None means the whole blob. A header
    we cannot read is ignored (RFC 9110 lets servers do so); one outside the blob is a 416."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(0) == "bytes=-":
        return None
    first, last = (parse_decimal(group) for group in match.groups())  # None where empty
    if first is None:  # a suffix, bytes=-N: the last N bytes; bytes=-0 asks for none of them
        if last is None or last == 0:
            raise RangeInvalid(detail={"size": size})
        return max(size - last, 0), size
    end = size if last is None else min(last + 1, size)
    if first >= size or (last is not None and last < first):
        raise RangeInvalid(detail={"size": size})
    return first, end


def blob_headers(digest: str, size: int) -> dict[str, str]:
    return {
        **API_VERSION_HEADER,
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Content-Length": str(size),
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }


async def linked_blob_size(ctx: OCIContext, name: str, digest: str) -> int:
    """The size of blob `digest` in repository `name`; BlobUnknown if it is not there."""
    size = ctx.registry.cached_blob_size(name, digest)
    if size is None:  # SQLite: read on the loop; PostgreSQL: the loop's pipelined lookups (db.lookups)
        size = await ctx.registry.blob_size_async(name, digest, ctx.point_read)
    return size


async def head_blob(ctx: OCIContext, request: Request, name: str, digest: str) -> Response:
    try:
        size = await linked_blob_size(ctx, name, digest)
    except BlobUnknown:
        config = None if ctx.proxy is None else await proxying.proxy_of(ctx.proxy, name, ctx.call)
        if config is None or ctx.proxy is None:
            raise
        size = await ctx.call(ctx.proxy.cache.blob_size, config, name, digest)  # upstream's answer
    return PreparedResponse(b"", _head_headers(digest, size))


_prepared: dict[tuple[str, int], RawHeaders] = {}


def _head_headers(digest: str, size: int) -> RawHeaders:
    """A HEAD's headers, encoded once per (digest, size): what Starlette's Response would send for
    `blob_headers` with the octet-stream type, without building and encoding them on every request."""
    key = (digest, size)
    raw = _prepared.get(key)
    if raw is None:
        if len(_prepared) > 10_000:
            _prepared.clear()
        headers = {**blob_headers(digest, size), "Content-Type": "application/octet-stream"}
        raw = _prepared[key] = encode_headers(headers)
    return raw


async def get_blob(ctx: OCIContext, request: Request, name: str, digest: str) -> Response:
    try:
        size = await linked_blob_size(ctx, name, digest)
    except BlobUnknown:
        config = None if ctx.proxy is None else await proxying.proxy_of(ctx.proxy, name, ctx.call)
        if config is None or ctx.proxy is None:
            raise
        fetch = await proxying.open_blob(ctx.proxy, config, name, digest, ctx.call)
        if fetch is not None:  # this request fetches it: the bytes as they arrive (the whole blob)
            headers = blob_headers(digest, fetch.size or 0)
            if fetch.size is None:
                del headers["Content-Length"]
            headers["Cache-Control"] = "no-store"
            return proxying.blob_response(ctx.proxy, request, config, name, digest, fetch, headers, ctx.call)
        size = await linked_blob_size(ctx, name, digest)  # another request fetched it meanwhile
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except RangeInvalid as exc:  # with the size, for the client to ask again
        return render_error(exc, headers={"Content-Range": f"bytes */{size}"})
    location = ctx.blobs.locate(digest, size, redirect=ctx.redirect_blobs)
    if ctx.pull_notifications is not None and byte_range is None:  # a resumed download is the same pull
        blob_pulled(ctx, request, name, digest, size)
    if location.redirect_url:
        return RedirectResponse(location.redirect_url, status_code=307, headers=API_VERSION_HEADER)
    headers = blob_headers(digest, size)
    ctx.metrics.blob_bytes_sent.inc(size if byte_range is None else byte_range[1] - byte_range[0])
    if location.local_path and "range" not in request.headers:
        # The server sends the file where it can (ASGI pathsend: Granian), no Python per byte.
        return FileResponse(
            location.local_path,
            headers=headers,
            media_type="application/octet-stream",
            stat_result=os.stat(location.local_path),
        )
    start, end = byte_range or (0, size)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
    if location.local_path:
        return FileRangeResponse(location.local_path, start, end, status, headers)
    stream = await ctx.call(ctx.blobs.open, digest, start)
    return StreamingResponse(
        iterate_in_threadpool(_read(stream, end - start)),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


def _read(stream: object, remaining: int) -> Iterator[bytes]:
    with stream:  # type: ignore[attr-defined]
        while remaining > 0:
            chunk = stream.read(min(_READ_CHUNK, remaining))  # type: ignore[attr-defined]
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


async def delete_blob(ctx: OCIContext, request: Request, name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    await ctx.call(ctx.registry.delete_blob, name, digest)
    await blob_deleted(ctx, request, name, digest)
    return Response(b"", status_code=202, headers={**API_VERSION_HEADER, "Docker-Content-Digest": digest})
