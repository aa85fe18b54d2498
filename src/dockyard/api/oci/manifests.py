"""Manifest endpoints: GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.api.manifest_effects import PushedManifest, request_info
from dockyard.api.oci import proxying
from dockyard.api.oci.auditing import count_pull
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import API_VERSION_HEADER
from dockyard.api.oci.notifying import actor_of, manifest_pulled
from dockyard.api.oci.responses import PreparedResponse, created, encode_headers
from dockyard.api.oci.streaming import declared_length
from dockyard.content import mediatypes
from dockyard.content.manifest import MAX_MANIFEST_SIZE
from dockyard.errors import ManifestTooLarge, ManifestUnknown, SizeInvalid
from dockyard.projects.interfaces import PullRefused
from dockyard.registry.interfaces import ManifestRecord
from dockyard.signatures.pull_gate import UNKNOWN, is_supporting_artifact


def _acceptable(request: Request, record: ManifestRecord) -> bool:
    """Content negotiation: a client that lists manifest types in Accept must list this one.
    Clients with no Accept, a wildcard, or no manifest types at all get the manifest as it is."""
    # Go clients (containers/image, containerd) send one Accept header per media type.
    accept = tuple([value for name, value in request.scope["headers"] if name == b"accept"])
    if not accept:
        return True
    key = (accept, record.media_type)
    answer = _answers.get(key)
    if answer is None:  # a client sends the same Accept on every pull: parsed once per process
        answer = _negotiate([line.decode("latin-1") for line in accept], record.media_type)
        if sum(map(len, accept)) <= _MAX_KEPT_ACCEPT:  # at most ~1 MiB kept
            if len(_answers) >= _MAX_ANSWERS:
                _answers.clear()
            _answers[key] = answer
    return answer


_answers: dict[tuple[tuple[bytes, ...], str], bool] = {}
_MAX_ANSWERS = 1000
_MAX_KEPT_ACCEPT = 1024


def _negotiate(accept: list[str], media_type: str) -> bool:
    offered = {part.split(";", 1)[0].strip().lower() for line in accept for part in line.split(",")}
    if media_type in offered or "*/*" in offered:
        return True
    return not (offered & (mediatypes.MANIFEST_TYPES | mediatypes.SCHEMA1_TYPES))


async def _lookup(ctx: OCIContext, request: Request, name: str, reference: str) -> ManifestRecord:
    config = None if ctx.proxy is None else await proxying.proxy_of(ctx.proxy, name, ctx.call)
    record: ManifestRecord | None
    if config is not None and ctx.proxy is not None:  # a proxy project: through the cache
        record = await proxying.manifest(ctx.proxy, request, config, name, reference, ctx.call)
    else:
        record = ctx.registry.cached_manifest(name, reference)
    if record is None:  # SQLite: read on the loop; PostgreSQL: the loop's pipelined lookups (db.lookups)
        record = await ctx.registry.manifest_async(name, reference, ctx.point_read)
    if not _acceptable(request, record):
        raise ManifestUnknown(
            f"manifest is {record.media_type}, which the request's Accept header does not list",
            detail={"mediaType": record.media_type},
        )
    return record


_prepared: dict[tuple[str, str, int], list[tuple[bytes, bytes]]] = {}


def _raw_headers(record: ManifestRecord) -> list[tuple[bytes, bytes]]:
    key = (record.digest, record.media_type, record.size)
    raw = _prepared.get(key)
    if raw is None:
        if len(_prepared) > 10_000:
            _prepared.clear()
        headers = {
            **API_VERSION_HEADER,
            "Content-Type": record.media_type,
            "Docker-Content-Digest": record.digest,
            "ETag": f'"{record.digest}"',
            "Content-Length": str(record.size),
        }
        raw = _prepared[key] = encode_headers(headers)
    return raw


async def _police(ctx: OCIContext, name: str, record: ManifestRecord) -> None:
    """Refuse a pull the project's pull policies forbid (projects.pull_policies): one dict lookup for a
    project without policies once cached; cached decisions for one with; the database on a miss, in a
    worker thread. Only GETs: a HEAD carries no message, and docker, containerd, podman and skopeo
    all GET the manifest after a HEAD, so the pull fails there with the policy's message."""
    gate = ctx.pull_gate
    if gate is None:
        return
    digest = record.digest
    refusal = gate.fast(name, digest)
    if refusal is UNKNOWN:
        refusal = await ctx.call(gate.check, name, digest)
    if refusal and not is_supporting_artifact(record.content, record.media_type):
        raise PullRefused(str(refusal), detail={"repository": name, "digest": digest})


async def get_manifest(ctx: OCIContext, request: Request, name: str, reference: str) -> Response:
    record = await _lookup(ctx, request, name, reference)
    await _police(ctx, name, record)
    if ctx.pulls is not None:  # a dict write; a background thread puts it in the DB
        ctx.pulls.note(name, record.digest)
    if ctx.pull_audit is not None:  # the same: counted per hour, by digest, whether pulled by tag or not
        count_pull(ctx.pull_audit, request.scope, name, record.digest)
    if ctx.pull_notifications is not None:  # a list append; a background thread records it
        await manifest_pulled(ctx, request, name, reference, record.digest, record.media_type, record.size)
    return PreparedResponse(record.content, _raw_headers(record))


async def head_manifest(ctx: OCIContext, request: Request, name: str, reference: str) -> Response:
    record = await _lookup(ctx, request, name, reference)
    return PreparedResponse(b"", _raw_headers(record))


async def put_manifest(ctx: OCIContext, request: Request, name: str, reference: str) -> Response:
    body = await _read_limited(request)
    result = await ctx.small_write(
        ctx.registry.put_manifest, name, reference, body, request.headers.get("content-type")
    )
    pushed = PushedManifest(name, reference, result.digest, result.media_type, len(body), result.subject)
    effects = ctx.effects
    if effects is not None and effects.push_needed(pushed):  # events, signature checks, scans, replication
        await ctx.call(effects.pushed, pushed, request_info(request), actor_of(request))
    response = created(ctx.url(f"/v2/{name}/manifests/{result.digest}"), result.digest)
    if result.subject:
        response.raw_headers.append((b"oci-subject", result.subject.encode("latin-1")))
    return response


async def delete_manifest(ctx: OCIContext, request: Request, name: str, reference: str) -> Response:
    await ctx.call(ctx.registry.delete_manifest, name, reference)
    effects = ctx.effects
    if effects is not None and effects.delete_needed(name, reference):  # events, replication
        await ctx.call(effects.deleted, name, reference, request_info(request), actor_of(request))
    return Response(b"", status_code=202, headers={**API_VERSION_HEADER, "Content-Length": "0"})


async def _read_limited(request: Request) -> bytes:
    """Read a manifest body, refusing more than the limit before buffering it."""
    length = declared_length(request)
    if length is not None and length > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(f"manifest is {length} bytes; the limit is {MAX_MANIFEST_SIZE}")
    parts: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_MANIFEST_SIZE:
                raise ManifestTooLarge(f"manifest exceeds the limit of {MAX_MANIFEST_SIZE} bytes")
            parts.append(chunk)
    except ClientDisconnect:
        raise SizeInvalid("the client disconnected before the whole manifest arrived") from None
    if length is not None and received != length:
        raise SizeInvalid("request body is shorter than its Content-Length")
    return b"".join(parts)
