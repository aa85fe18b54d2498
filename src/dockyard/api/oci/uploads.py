"""Upload endpoints: POST /v2/<name>/blobs/uploads/ and GET/PATCH/PUT/DELETE .../uploads/<id>. Every
step of an upload session goes through one service, `ctx.blob_uploads` (registry.blob_uploads)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.oci.blobs import linked_blob_size
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import API_VERSION_HEADER
from dockyard.api.oci.gate import MOUNT_REFUSED_KEY, MOUNT_SOURCES_KEY, PRINCIPAL_KEY
from dockyard.api.oci.notifying import blob_pushed
from dockyard.api.oci.responses import created
from dockyard.api.oci.streaming import WRITE_CHUNK, declared_length, receive_into, write_each
from dockyard.auth.interfaces import Principal
from dockyard.content.digest import parse_digest
from dockyard.content.reference import validate_name
from dockyard.errors import (
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    ChunkOutOfOrder,
    DigestInvalid,
    DockyardError,
    SizeInvalid,
    TooManyRequests,
)
from dockyard.projects.interfaces import QuotaExceeded
from dockyard.registry.upload_budget import UploadBudget
from dockyard.storage.paths import check_upload_id
from dockyard.storage.uploads import AppendSession, UploadState

# Offsets of at most 19 digits (a signed 64-bit size): longer ones are malformed, not a 500 from int().
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]{1,19}|\*))?$")


def _owner(request: Request) -> str | None:
    """Who the upload belongs to: the authenticated principal (by id where it has one, so a
    re-created account of the same name is someone else); None when the registry runs without auth."""
    principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if principal is None:
        return None
    return f"{principal.kind.value}:{principal.name if principal.id is None else principal.id}"


def _upload_headers(ctx: OCIContext, name: str, state: UploadState) -> dict[str, str]:
    return {
        **API_VERSION_HEADER,
        "Location": ctx.url(f"/v2/{name}/blobs/uploads/{state.id}"),
        "Range": f"0-{max(state.size - 1, 0)}",
        "Docker-Upload-UUID": state.id,
        "Content-Length": "0",
    }


def _created(ctx: OCIContext, name: str, digest: str) -> Response:
    return created(ctx.url(f"/v2/{name}/blobs/{digest}"), digest)


# The query strings of mounts, parsed (~10 µs each with Starlette's QueryParams): a cross-repository push
# mounts the same few blobs (`mount=<digest>&from=<repository>`) into every repository it pushes to.
_MOUNT_QUERIES: dict[bytes, QueryParams] = {}
_MAX_MOUNT_QUERIES = 256
_MAX_KEPT_QUERY = 512


def _start_query(request: Request) -> QueryParams:
    """The POST's query parameters: those of a mount parsed once per process (at most
    _MAX_MOUNT_QUERIES kept, each under _MAX_KEPT_QUERY bytes); others (an upload's digest, which
    never comes twice) parsed as they come."""
    raw: bytes = request.scope.get("query_string", b"")
    if b"mount=" not in raw or len(raw) > _MAX_KEPT_QUERY:
        return request.query_params
    params = _MOUNT_QUERIES.get(raw)
    if params is None:
        params = request.query_params
        if len(_MOUNT_QUERIES) >= _MAX_MOUNT_QUERIES:
            _MOUNT_QUERIES.clear()
        _MOUNT_QUERIES[raw] = params
    return params


async def start_upload(ctx: OCIContext, request: Request, name: str) -> Response:
    validate_name(name)
    params = _start_query(request)
    mount = params.get("mount")
    if mount is not None:
        parse_digest(mount)
        source = params.get("from")
        if source is not None:
            validate_name(source)
        # The gate lets a caller who may not read the source push anyway: no mount, a plain upload. An
        # automatic mount (no source) takes the blob only from projects the gate says the caller may read.
        may_mount = not request.scope.get(MOUNT_REFUSED_KEY)
        projects = request.scope.get(MOUNT_SOURCES_KEY) if source is None else None
        mount_blob = ctx.registry.mount_blob
        size = await ctx.small_write(mount_blob, name, mount, source, projects) if may_mount else None
        if size is not None:
            await blob_pushed(ctx, request, name, mount, size, mounted_from=source or "")
            return _created(ctx, name, mount)
    digest = params.get("digest")
    if digest is None:
        # One short write (a row, not flushed): on the small-write threads, a cheaper hand-off.
        state = await ctx.small_write(ctx.blob_uploads.start, name, _owner(request))
        ctx.metrics.uploads_started.inc()
        if ctx.upload_limits is not None:
            try:
                await ctx.upload_limits.claim(request.scope, state.id)
            except TooManyRequests:
                await ctx.call(ctx.blob_uploads.drop, state)  # the client never learns its id
                raise
        return Response(b"", status_code=202, headers=_upload_headers(ctx, name, state))
    # Monolithic upload: the whole blob is the POST body. The budget is checked before a session exists
    # (nothing to undo), then the session is made and opened for the body, in one thread hop.
    parse_digest(digest)
    length = declared_length(request)
    owner = _owner(request)

    def open_session() -> tuple[UploadBudget, AppendSession]:
        budget = _budget(ctx, name, 0, length, digest)
        # No row: this request fills and commits the session, and nobody else ever learns its id.
        state = ctx.blob_uploads.start(name, owner, recorded=False)
        ctx.metrics.uploads_started.inc()
        try:
            return budget, ctx.blob_uploads.begin_append(state, commits=True)
        except BaseException:
            ctx.blob_uploads.drop(state)
            raise

    budget, session = await ctx.call(open_session)
    # Cut short or refused mid-body, the session is dropped: the client never learnt its id, so
    # nobody could resume or cancel it.
    state = await _append(ctx, request, session, budget, commit_to=digest, drop_unfinished=True)
    await blob_pushed(ctx, request, name, digest, state.size)
    return _created(ctx, name, digest)


async def upload_status(ctx: OCIContext, request: Request, name: str, upload_id: str) -> Response:
    state = await ctx.call(ctx.blob_uploads.get, name, upload_id, _owner(request))
    return Response(b"", status_code=204, headers=_upload_headers(ctx, name, state))


async def patch_upload(ctx: OCIContext, request: Request, name: str, upload_id: str) -> Response:
    content_range, length = request.headers.get("content-range"), declared_length(request)
    owner = _owner(request)
    found: UploadState | None = None
    if ctx.upload_limits is not None:
        found = await ctx.call(ctx.blob_uploads.get, name, upload_id, owner)
        _check_content_range(content_range, length, found)
        # Before the body: a refused upload stays as it was.
        await ctx.upload_limits.claim(request.scope, found.id)

    def open_append() -> tuple[UploadBudget, AppendSession]:
        state = found
        if state is None:  # else found and checked above, before the place was claimed
            state = ctx.blob_uploads.get(name, upload_id, owner)
            _check_content_range(content_range, length, state)
        # Refused before reading the chunk, the upload stays as it was and may resume once there is room.
        return _open_session(ctx, name, state, length, None)

    if _small_body(request, length):
        # Read whole first, as a small PUT's body: found, opened, written and recorded in one thread
        # hop, not three (open, write, record), and the upload is locked only for that hop. A body cut
        # short was never opened: the upload stays as it was.
        received, tail = await receive_into(request, _nothing_before_the_tail, ctx.io, keep_tail=True)

        def open_write_record() -> UploadState:
            budget, session = open_append()
            return _write_and_finish(ctx, session, budget, tail, received, None, False)

        state = await ctx.call(open_write_record)
    else:
        budget, session = await ctx.call(open_append)
        state = await _append(ctx, request, session, budget)
    if ctx.upload_limits is not None:  # a chunk may take longer than the place's expiry
        await ctx.upload_limits.refresh(request.scope, state.id)
    return Response(b"", status_code=202, headers=_upload_headers(ctx, name, state))


async def finish_upload(ctx: OCIContext, request: Request, name: str, upload_id: str) -> Response:
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalid("the digest query parameter is required to complete an upload")
    parse_digest(digest)
    try:
        if ctx.upload_limits is None:
            state = await _finish_upload(ctx, request, name, upload_id, digest)
        else:
            # Found first: only the upload's owner gives its place back.
            found = await ctx.call(ctx.blob_uploads.get, name, upload_id, _owner(request))
            try:
                state = await _finish_upload(ctx, request, name, upload_id, digest, found)
            finally:  # done or failed, the owner's place is given back (PATCHes claim one again)
                await ctx.upload_limits.release(request.scope, found.id)
    except BlobUploadUnknown:
        if not await _committed_already(ctx, request, name, upload_id, digest):
            raise
        return _created(ctx, name, digest)
    await blob_pushed(ctx, request, name, digest, state.size)
    return _created(ctx, name, digest)


async def _committed_already(
    ctx: OCIContext, request: Request, name: str, upload_id: str, digest: str
) -> bool:
    """A final PUT (no body) naming an upload that is gone, of a blob the repository has: the same PUT
    again, after its upload was committed. PUT is idempotent in HTTP, so a balancer may send it again
    when the node that ran it died before it answered (HAProxy's `retry-on empty-response`,
    deploy/haproxy.cfg): it gets the answer the first one would have had, not a 404 its client cannot
    tell from a lost upload. Nothing changes. The upload's owner is not known any more, and needs not
    be: the caller may push to the repository, and whether a blob is there tells a pusher nothing a
    manifest PUT naming it would not (MANIFEST_BLOB_UNKNOWN or not)."""
    if declared_length(request) not in (0, None) or request.headers.get("transfer-encoding"):
        return False  # a body to store: not the repeat of a final PUT
    try:
        check_upload_id(upload_id)
        await linked_blob_size(ctx, name, digest)
    except (BlobUploadUnknown, BlobUnknown):
        return False
    return True


async def _finish_upload(
    ctx: OCIContext,
    request: Request,
    name: str,
    upload_id: str,
    digest: str,
    found: UploadState | None = None,
) -> UploadState:
    """The PUT in two thread hops: find the upload (unless `found`) and open it for the body, then write
    the body's last pieces and commit; with no body, one: find and commit."""
    headers = request.headers
    content_range, length, owner = headers.get("content-range"), declared_length(request), _owner(request)

    def find() -> UploadState:
        state = ctx.blob_uploads.get(name, upload_id, owner) if found is None else found
        _check_content_range(content_range, length, state)
        return state

    if length == 0 and not headers.get("transfer-encoding"):

        def commit_unchanged() -> UploadState:
            state = find()
            _commit(ctx, state, digest)
            return state

        return await ctx.call(commit_unchanged)

    def open_append() -> tuple[UploadBudget, AppendSession]:
        return _open_session(ctx, name, find(), length, digest)

    if _small_body(request, length):
        # A body this small is read whole before anything is written (receive_into keeps the tail of
        # a body that is to be committed), so the upload is found, opened, written and committed in
        # one thread hop, not two. A body cut short was never opened: the upload stays as it was.
        received, tail = await receive_into(request, _nothing_before_the_tail, ctx.io, keep_tail=True)

        def open_write_commit() -> UploadState:
            budget, session = open_append()
            return _write_and_finish(ctx, session, budget, tail, received, digest, False)

        return await ctx.call(open_write_commit)

    budget, session = await ctx.call(open_append)
    return await _append(ctx, request, session, budget, commit_to=digest)


def _small_body(request: Request, length: int | None) -> bool:
    """A body of at most WRITE_CHUNK declared bytes: `receive_into` keeps it whole as the tail."""
    return length is not None and length <= WRITE_CHUNK and not request.headers.get("transfer-encoding")


def _nothing_before_the_tail(data: bytes) -> None:
    raise AssertionError("a body of at most WRITE_CHUNK bytes is kept whole as the tail")


async def cancel_upload(ctx: OCIContext, request: Request, name: str, upload_id: str) -> Response:
    await ctx.call(ctx.blob_uploads.cancel, name, upload_id, _owner(request))
    if ctx.upload_limits is not None:  # only its owner's cancel gets here
        await ctx.upload_limits.release(request.scope, upload_id)
    return Response(b"", status_code=204, headers={**API_VERSION_HEADER, "Content-Length": "0"})


# --- the synchronous steps, each run in a worker thread (ctx.call), several per hop ----------------------


def _open_session(
    ctx: OCIContext, name: str, state: UploadState, length: int | None, digest: str | None
) -> tuple[UploadBudget, AppendSession]:
    # Refused before reading the body, the upload stays as it was and may resume once there is room.
    budget = _budget(ctx, name, state.size, length, digest)
    return budget, ctx.blob_uploads.begin_append(state, commits=digest is not None)


def _budget(ctx: OCIContext, name: str, size: int, length: int | None, digest: str | None) -> UploadBudget:
    """What this request's body may add to an upload holding `size` bytes (registry.upload_budget). A
    declared length that could not fit (the per-upload limit, the project's quota) is refused now, before
    a byte of it is read; a body without one is stopped where it stops fitting."""
    budget = ctx.blob_uploads.budget(name, size, digest)
    budget.check(length)
    return budget


def _check_content_range(header: str | None, length: int | None, state: UploadState) -> None:
    if header is None:
        return  # a streamed chunk: it simply continues the upload
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise ChunkOutOfOrder("malformed Content-Range header", detail={"content-range": header})
    start, end = int(match.group(1)), int(match.group(2))
    if start != state.size or end < start:
        raise ChunkOutOfOrder(
            f"chunk must start at offset {state.size}", detail={"content-range": header, "size": state.size}
        )
    if length is not None and length != end - start + 1:
        raise ChunkOutOfOrder(
            "Content-Range does not match Content-Length", detail={"content-range": header, "length": length}
        )


async def _append(
    ctx: OCIContext,
    request: Request,
    session: AppendSession,
    budget: UploadBudget,
    commit_to: str | None = None,
    drop_unfinished: bool = False,
) -> UploadState:
    """Stream the body onto the upload, within `budget`, and record it, in the same thread hop as the
    body's last pieces; with `commit_to` (a digest), commit the upload instead: the commit removes the
    upload's row in its own transaction, so the new size need not be written first. `drop_unfinished`:
    drop the upload if its body is not all kept (the client never learnt its id)."""

    # In a blob-io thread, then the last pieces in the committing one.
    write = _budgeted_writer(session, budget)

    def kept(tail: list[bytes], received: int) -> UploadState:
        return _write_and_finish(ctx, session, budget, tail, received, commit_to, drop_unfinished)

    try:
        received, tail = await receive_into(request, write, ctx.io, keep_tail=True)
    except (BlobUploadInvalid, SizeInvalid, QuotaExceeded):
        # The body was cut short, or stopped where it no longer fitted: what did arrive is good, so keep
        # it and let the client resume from the offset that GET on the upload reports (or cancel).
        await ctx.call(_keep_received, ctx, session, budget, drop_unfinished)
        raise
    except BaseException:
        await ctx.call(_drop_received, ctx, session, budget)
        raise
    return await ctx.call(kept, tail, received)


def _budgeted_writer(session: AppendSession, budget: UploadBudget) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        granted = budget.take(len(data))
        if granted:
            session.write(data if granted == len(data) else memoryview(data)[:granted])  # type: ignore[arg-type]
        if granted < len(data):
            raise budget.refusal(len(data) - granted)

    return write


def _write_and_finish(
    ctx: OCIContext,
    session: AppendSession,
    budget: UploadBudget,
    tail: list[bytes],
    received: int,
    commit_to: str | None,
    drop_unfinished: bool,
) -> UploadState:
    """Write a body's last pieces and record them, or with `commit_to` commit the upload (in a worker
    thread: `_append`'s last hop, or a small PUT's only one)."""
    try:
        write_each(_budgeted_writer(session, budget), tail)
    except (BlobUploadInvalid, SizeInvalid, QuotaExceeded):
        _keep_received(ctx, session, budget, drop_unfinished)
        raise
    except BaseException:
        _drop_received(ctx, session, budget)
        raise
    ctx.metrics.blob_bytes_received.inc(received)
    try:
        state = session.finish(commit_to is None)
    except BaseException:
        budget.settle(False)
        if drop_unfinished:
            ctx.blob_uploads.drop(session.state)
        raise
    budget.settle(commit_to is None)
    if commit_to is not None:
        _commit(ctx, state, commit_to)
    return state


def _keep_received(ctx: OCIContext, session: AppendSession, budget: UploadBudget, drop: bool) -> None:
    """A body cut short or refused part-way: record what arrived, so the client may resume (or, with
    `drop`, the upload goes: nobody knows its id)."""
    if drop and not session.state.recorded:  # no row to record them in, and nobody to resume them
        _drop_received(ctx, session, budget)
        ctx.blob_uploads.drop(session.state)
        return
    recorded = False
    try:
        session.finish()
        recorded = True
    finally:
        budget.settle(recorded)
        if drop:
            ctx.blob_uploads.drop(session.state)


def _drop_received(ctx: OCIContext, session: AppendSession, budget: UploadBudget) -> None:
    budget.settle(False)
    _abort_quietly(session)
    ctx.metrics.uploads_failed.inc()


def _abort_quietly(session: AppendSession) -> None:
    with contextlib.suppress(DockyardError):
        session.abort()


def _commit(ctx: OCIContext, state: UploadState, digest: str) -> None:
    try:
        ctx.blob_uploads.commit(state, digest)
    except (DigestInvalid, SizeInvalid, QuotaExceeded):
        # The bytes can never become this blob (or not in this project now): drop the session so
        # nothing half-done lingers.
        ctx.metrics.uploads_failed.inc()
        ctx.blob_uploads.drop(state)
        raise
    except BaseException:
        # Failed before it reached storage (e.g. read-only): a writer this request left open for the
        # commit still holds the upload; let the client's next request in.
        ctx.blob_uploads.release(state)
        raise
    ctx.metrics.uploads_completed.inc()
