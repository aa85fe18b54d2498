"""The layer browser: the files of one layer of an image, one file's bytes, the image's merged tree, and
the difference between two images. Read from the stored blobs, streamed; who may pull the repository may
read them (as the manifest itself), others get the 404 of a repository they cannot see.

Listings are NDJSON (`application/x-ndjson`): one entry a line as the layer's tar stream reaches it, so
the first entries of a 500 MB layer arrive while the rest is still being read, and a client may stop
reading when it has what it wants. The last line is `{"end": {...}}` (counts, names skipped) when the
listing is complete, or `{"errors": [...]}` (the API's error format) when reading stopped part way (a
gzip bomb reaching `layer_files.max_layer_bytes`, a truncated archive): a listing without either line was
cut off. Errors found before the first entry are plain error answers with their status.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request

from dockyard.api.management.access import require
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError, code_for, status_for
from dockyard.api.management.security import Caller
from dockyard.api.management.streaming import ClosingStreamingResponse
from dockyard.errors import DockyardError, NameUnknown
from dockyard.projects.rbac import Permission, project_of

# The layer readers (dockyard.scanning: the tar stream, the merged tree, the inventory for diffs, ~1 MiB)
# load on the first call that reads a layer, not with the API, which every call under /api/v1 builds.
if TYPE_CHECKING:
    from dockyard.scanning.imagefiles import Image, ImageFiles
    from dockyard.scanning.layerfiles import LayerReader
    from dockyard.scanning.tarstream import TarStream

log = logging.getLogger("dockyard.api.management")
router = APIRouter(tags=["files"])
Services = Annotated[ManagementServices, Depends(services_of)]
NDJSON = "application/x-ndjson"
FLUSH_ENTRIES = 200  # entries per chunk written, after the first (which goes alone, at once)
FLUSH_SECONDS = 0.2  # or sooner, when the tar stream is slow to reach the next entry
ATTACHMENT_NAME = re.compile(r"[^A-Za-z0-9._-]")
# A file of a layer is attacker content: never let a browser render it on our origin.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}
RANGE = re.compile(r"bytes=(\d*)-(\d*)")

Platform = Annotated[
    str | None,
    Query(
        max_length=100, description="For an index: the image's platform (`linux/amd64`, `linux/arm64/v8`)."
    ),
]
PathParam = Annotated[str, Query(max_length=4096, description="A directory of the tree, `/` for the root.")]
Recursive = Annotated[bool, Query(description="Everything below the directory, not just its children.")]


def files_of(services: ManagementServices) -> ImageFiles:
    from dockyard.scanning.imagefiles import ImageFiles
    from dockyard.scanning.interfaces import Limits

    if services.blobs is None:
        raise ApiError(503, "the blob store is not available to the management API")
    bounds = services.layer_files
    limits = Limits(
        max_layer_bytes=bounds.max_layer_bytes,
        max_image_bytes=bounds.max_image_bytes,
        max_entries=bounds.max_entries,
        max_seconds=bounds.max_seconds,
    )
    from dockyard.scans.layer_index import LayerIndexes  # loaded when first asked for

    return ImageFiles(services.registry, services.blobs, limits, LayerIndexes(services.db))


def _pullable(services: ManagementServices, principal: Any, name: str) -> None:
    """As reading the manifest over /v2: the pull permission; a repository the caller cannot see is 404."""
    require(services, principal, project_of(name), Permission.PULL, NameUnknown(detail={"name": name}))


def _error_line(exc: DockyardError) -> bytes:
    status = status_for(exc)
    message = exc.public_message or exc.message if status != 500 else "internal server error"
    return _line({"errors": [{"code": code_for(status), "message": message}]})


def _line(item: dict[str, Any]) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode() + b"\n"


def ndjson(items: Iterator[dict[str, Any]], close: Callable[[], None]) -> ClosingStreamingResponse:
    """Stream `items` as NDJSON. The first item is read here, so an error before it (not a tar, zstd,
    a missing blob) is an ordinary error answer; later ones become the last line."""
    try:
        first = next(items, None)
    except BaseException:
        close()
        raise

    def body() -> Iterator[bytes]:
        try:
            if first is not None:
                yield _line(first)
            batch: list[bytes] = []
            flushed = time.monotonic()
            for item in items:
                batch.append(_line(item))
                if len(batch) >= FLUSH_ENTRIES or time.monotonic() - flushed > FLUSH_SECONDS:
                    yield b"".join(batch)
                    batch, flushed = [], time.monotonic()
            yield b"".join(batch)
        except DockyardError as exc:
            log.info("file listing stopped: %s", exc.message)
            yield _error_line(exc)
        finally:
            close()

    return ClosingStreamingResponse(body(), media_type=NDJSON, headers=SAFE_HEADERS)


@router.get("/repositories/{name:path}/artifacts/{reference}/layers/{layer}/files")
def layer_files(
    name: str,
    reference: str,
    layer: str,
    principal: Caller,
    services: Services,
    path: PathParam = "/",
    recursive: Recursive = False,
    digests: Annotated[
        bool, Query(description="Add each regular file's sha256 (reads every byte: slower).")
    ] = False,
    platform: Platform = None,
) -> ClosingStreamingResponse:
    """One layer's entries below `path` (NDJSON, streamed from the stored blob, in archive order):
    path, type, size, mode, owner, mtime, link target, whiteout and opaque markers."""
    _pullable(services, principal, name)
    from dockyard.scanning.layerfiles import children, clean_path

    files = files_of(services)
    image = files.image(name, reference, platform)
    directory = clean_path(path)
    entries = files.entries(image, layer, digests)

    def lines() -> Iterator[dict[str, Any]]:
        for entry in children(iter(entries), directory, recursive):
            yield entry.as_json()
        yield {"end": {"layer": layer, "image": image.digest, **entries.summary()}}

    return ndjson(lines(), entries.close)


@router.get("/repositories/{name:path}/artifacts/{reference}/files")
def image_files(
    name: str,
    reference: str,
    principal: Caller,
    services: Services,
    path: PathParam = "/",
    recursive: Recursive = False,
    platform: Platform = None,
) -> ClosingStreamingResponse:
    """The image's merged tree below `path` (NDJSON, sorted by path): the layers applied in order,
    whiteouts and opaque directories respected; each entry names the layer it comes from. Every layer
    is read before the first line."""
    _pullable(services, principal, name)
    from dockyard.scanning.layerfiles import clean_path

    files = files_of(services)
    image = files.image(name, reference, platform)
    directory = clean_path(path)
    tree = files.merged(image)

    def lines() -> Iterator[dict[str, Any]]:
        count = 0
        for entry in tree.below(directory, recursive):
            count += 1
            yield entry.as_json()
        yield {"end": {"image": image.digest, "layers": len(image.layers), "entries": count}}

    return ndjson(lines(), lambda: None)


@router.get("/repositories/{name:path}/artifacts/{reference}/layers/{layer}/download")
def download_file(
    name: str,
    reference: str,
    layer: str,
    request: Request,
    principal: Caller,
    services: Services,
    path: Annotated[str, Query(max_length=4096, description="The file's path in the layer.")],
    platform: Platform = None,
) -> ClosingStreamingResponse:
    """One regular file of the layer, as an attachment (`application/octet-stream`, never rendered);
    a hard link gives its target's bytes, a symbolic link is refused (links are not followed).
    `Range: bytes=A-B` answers 206."""
    _pullable(services, principal, name)
    from dockyard.scanning.interfaces import FileNotInLayer
    from dockyard.scanning.layerfiles import clean_path

    files = files_of(services)
    image = files.image(name, reference, platform)
    target = clean_path(path)
    if not target:
        raise FileNotInLayer("/ is the root directory, not a file")
    reader, tar, size = _open_file(files, image, layer, target)
    try:
        start, length, status, headers = _range(request.headers.get("range"), size)
    except BaseException:
        reader.blob.close()
        raise
    headers.update(SAFE_HEADERS)
    headers["Content-Disposition"] = _disposition(target)
    headers["Content-Length"] = str(length)
    headers["Accept-Ranges"] = "bytes"

    def body() -> Iterator[bytes]:
        try:
            yield from _window(reader.content(tar), start, length)
        except DockyardError as exc:  # past the headers: the short body tells the client
            log.warning("download of %s from %s stopped: %s", target, layer, exc.message)
        finally:
            reader.blob.close()

    return ClosingStreamingResponse(
        body(), status_code=status, media_type="application/octet-stream", headers=headers
    )


def _open_file(
    files: ImageFiles, image: Image, layer: str, target: str
) -> tuple[LayerReader, TarStream, int]:
    """The reader positioned on `target`'s bytes; a hard link is read again from the start for its
    target (a tar stream cannot seek back), at most MAX_HARDLINK_HOPS times."""
    from dockyard.scanning.interfaces import FileNotInLayer
    from dockyard.scanning.layerfiles import MAX_HARDLINK_HOPS, check_downloadable, readable_target
    from dockyard.scanning.tarstream import HARDLINK

    for _hop in range(MAX_HARDLINK_HOPS + 1):
        reader = files.reader(image, layer)
        try:
            entry, tar = reader.find(target)
            if entry.type != HARDLINK:
                check_downloadable(entry)
                return reader, tar, entry.size
            link = readable_target(entry)
            if link is None or link == target:
                raise FileNotInLayer(f"/{target} is a hard link out of the image root or to itself")
            target = link
        except BaseException:
            reader.blob.close()
            raise
        reader.blob.close()
    raise FileNotInLayer(f"/{target}: more than {MAX_HARDLINK_HOPS} hard links in a row")


def _range(header: str | None, size: int) -> tuple[int, int, int, dict[str, str]]:
    """(start, length, status, headers) for a `Range` header: one range only, as blobs answer it."""
    if not header:
        return 0, size, 200, {}
    match = RANGE.fullmatch(header.strip())
    first, last = (match.group(1), match.group(2)) if match else ("", "")
    if match is None or (not first and not last):
        raise ApiError(
            416, f"unsupported range {header!r}: one bytes=A-B range", {"Content-Range": f"bytes */{size}"}
        )
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(0, size - int(last)), size - 1
    if start >= size or end < start:
        raise ApiError(
            416, f"range {header!r} is outside the file's {size} bytes", {"Content-Range": f"bytes */{size}"}
        )
    return start, end - start + 1, 206, {"Content-Range": f"bytes {start}-{end}/{size}"}


def _window(chunks: Iterator[bytes], start: int, length: int) -> Iterator[bytes]:
    position = 0
    for chunk in chunks:
        if length <= 0:
            return
        if position + len(chunk) <= start:
            position += len(chunk)
            continue
        piece = chunk[max(0, start - position) :][:length]
        position += len(chunk)
        length -= len(piece)
        yield piece


def _disposition(path: str) -> str:
    """`attachment` with an ASCII name safe in a quoted string, and the real one percent-encoded."""
    base = path.rsplit("/", 1)[-1]
    plain = ATTACHMENT_NAME.sub("_", base)[:100].strip(".") or "download"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(base[:200], safe='')}"


@router.get("/repositories/{name:path}/artifacts/{reference}/diff")
def diff_artifacts(
    name: str,
    reference: str,
    principal: Caller,
    services: Services,
    to: Annotated[
        str,
        Query(
            max_length=512,
            description="The other artifact: a tag or digest of this repository, or REPOSITORY:TAG / "
            "REPOSITORY@DIGEST of any repository the caller may pull.",
        ),
    ],
    platform: Platform = None,
    to_platform: Annotated[
        str | None, Query(max_length=100, description="The other side's platform (default: `platform`).")
    ] = None,
    packages: Annotated[
        bool, Query(description="Compare the package inventories too (reads every layer again).")
    ] = True,
) -> dict[str, Any]:
    """From this artifact to `to`: layers shared, added and removed (by digest); files added, removed
    and changed (type, size, mode, owner, link target, content digest); packages added, removed and
    changed (the inventory the scanner reads). Lists are cut at 10,000 items (`files.truncated`)."""
    _pullable(services, principal, name)
    other, other_reference = _other(name, to)
    if other != name:
        _pullable(services, principal, other)
    files = files_of(services)
    old = files.image(name, reference, platform)
    new = files.image(other, other_reference, to_platform or platform)
    return files.diff(old, new, packages=packages)


def _other(name: str, to: str) -> tuple[str, str]:
    """`v2`, `sha256:...` (this repository), `team/app:2`, `team/app@sha256:...`, `team/app` (latest)."""
    if "@" in to:
        repository, _, digest = to.partition("@")
        return repository, digest
    if to.startswith("sha256:") or ("/" not in to and ":" not in to):
        return name, to
    slash, colon = to.rfind("/"), to.rfind(":")
    if colon > slash:
        return to[:colon], to[colon + 1 :]
    return to, "latest"
