"""The layer browser and the diff page: a layer's files, the image's merged tree, one file's download,
and what changed between two artifacts; each read from the management API's file routes
(docs/layer-files.md) as the signed-in user.

File names in a layer are the pusher's text: the page escapes them (autoescape), links carry them only
URL-encoded in a query string, and a download is always an attachment of type
`application/octet-stream` that no browser renders. A listing is read as it streams and the page stops
reading after PAGE_ENTRIES entries (the API stops reading the layer), so a layer of 100,000 files costs
one page of them, and the page says there are more.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH

if TYPE_CHECKING:
    from dockyard.ui.pages import Portal

PAGE_ENTRIES = 500  # rows of a listing page
MAX_PAGE = 10_000  # pages a listing may be turned to (skipping costs reading the entries before)
DIFF_ROWS = 500  # rows of each list of the diff page
MAX_LINE = 1024 * 1024  # an NDJSON line longer than this is not the API's
A = "/repositories/{name:path}/-/artifacts/{reference}"
DOWNLOAD_HEADERS = {
    # A file of a layer is content anyone with push access wrote: never rendered on our origin.
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@dataclass
class Listing:
    """One page of a directory's entries and how the listing ended."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    first: int = 0  # index of the first entry shown
    more: bool = False  # entries after this page
    end: dict[str, Any] | None = None  # the API's last line: the listing is complete
    error: str | None = None  # reading stopped part way (a bound, a truncated archive)


class BrowsePages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        """Before the portal's `/repositories/{name:path}` catch-all."""
        return [
            Route(f"{A}/files", self.image_files, methods=["GET"]),
            Route(f"{A}/layers/{{layer}}/files", self.layer_files, methods=["GET"]),
            Route(f"{A}/layers/{{layer}}/download", self.download, methods=["GET"]),
            Route("/repositories/{name:path}/-/diff", self.diff, methods=["GET"]),
        ]

    # --- file trees --------------------------------------------------------------------------------
    async def layer_files(self, request: Request) -> Response:
        return await self._files(request, request.path_params["layer"])

    async def image_files(self, request: Request) -> Response:
        return await self._files(request, None)

    async def _files(self, request: Request, layer: str | None) -> Response:
        """The page streams: its head at once, then rows as the API's listing brings them, then the
        foot (more pages, the end, or where reading stopped). A refusal before the first entry (not a
        tar, no such directory, a bound) is the page's status, as for any other page."""
        portal = self.portal
        caller, _ = portal.signed_in(request)
        name, reference = request.path_params["name"], request.path_params["reference"]
        directory = _directory(request.query_params.get("path"))
        page = max(1, min(_int(request.query_params.get("page"), 1), MAX_PAGE))
        artifact_path = f"/repositories/{name}/artifacts/{reference}"
        artifact = (await portal.read(caller, artifact_path)).json()
        layers = artifact["manifest"].get("layers") or []
        digests = [d.get("digest") for d in layers]
        if layer is not None and layer not in digests:
            raise portal.not_found()
        source = f"{artifact_path}/layers/{layer}/files" if layer else f"{artifact_path}/files"
        here = f"{MOUNT_PATH}/repositories/{quote(name)}/-/artifacts/{quote(artifact['digest'], safe=':')}"
        listing = Listing(first=(page - 1) * PAGE_ENTRIES)
        context = {
            "name": name,
            "artifact": artifact,
            "layer": layer,
            "layer_number": digests.index(layer) + 1 if layer else None,
            "layers": layers,
            "directory": directory,
            "crumbs": _crumbs(directory),
            "listing": listing,
            "page": page,
            "page_entries": PAGE_ENTRIES,
            "here": here,
        }
        stack = AsyncExitStack()
        stream = portal.api.stream(caller, source, params={"path": directory})
        answer = await stack.enter_async_context(stream)
        if answer.error is not None:
            await stack.aclose()
            portal.refused(answer.error)
        marker = f"<!--rows-{secrets.token_hex(8)}-->"
        try:
            head, _, _ = portal.html(request, "files.html", rows=Markup(marker), **context).partition(marker)
        except BaseException:
            await stack.aclose()  # the API's task is not left waiting for a reader
            raise

        async def body() -> AsyncIterator[bytes]:
            try:
                yield head.encode()
                async for batch in _page_of(answer.chunks, listing):
                    yield portal.html(request, "_file_rows.html", entries=batch, **context).encode()
            finally:
                await stack.aclose()
            page_html = portal.html(request, "files.html", rows=Markup(marker), **context)
            yield page_html.partition(marker)[2].encode()

        return StreamingResponse(
            body(), media_type="text/html; charset=utf-8", headers={"Vary": "HX-Request"}
        )

    async def download(self, request: Request) -> Response:
        """The API's download, passed through as it streams: an attachment, never rendered."""
        portal = self.portal
        caller, _ = portal.signed_in(request)
        name, reference = request.path_params["name"], request.path_params["reference"]
        layer, path = request.path_params["layer"], request.query_params.get("path", "")
        source = f"/repositories/{name}/artifacts/{reference}/layers/{layer}/download"
        stack = AsyncExitStack()
        answer = await stack.enter_async_context(portal.api.stream(caller, source, params={"path": path}))
        try:
            if answer.error is not None:
                portal.refused(answer.error)
        except BaseException:
            await stack.aclose()
            raise
        headers = dict(DOWNLOAD_HEADERS)
        headers["Content-Disposition"] = answer.headers.get("content-disposition", "attachment")
        if "content-length" in answer.headers:
            headers["Content-Length"] = answer.headers["content-length"]

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.chunks:
                    yield chunk
            finally:
                await stack.aclose()

        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)

    # --- diffs ---------------------------------------------------------------------------------------
    async def diff(self, request: Request) -> Response:
        """Two tags or digests of the repository (or `to` of another one): the form, and with both
        named, the API's diff: layers, files and packages."""
        portal = self.portal
        caller, _ = portal.signed_in(request)
        name = request.path_params["name"]
        old = request.query_params.get("from", "").strip()[:512]
        new = request.query_params.get("to", "").strip()[:512]
        platform = request.query_params.get("platform", "").strip()[:100]
        result = None
        if old and new:
            path = f"/repositories/{name}/artifacts/{old}/diff"
            params = {"to": new, **({"platform": platform} if platform else {})}
            result = (await portal.read(caller, path, params)).json()
            tags = []
        else:  # the form: the repository's newest tags to choose from
            answer = await portal.read(
                caller, f"/repositories/{name}/tags", {"sort": "-pushed_at", "page_size": "100"}
            )
            tags = [tag["name"] for tag in answer.json()]
        return portal.render(
            request,
            "diff.html",
            name=name,
            old=old,
            new=new,
            platform=platform,
            result=result,
            tags=tags,
            rows=DIFF_ROWS,
        )


async def _page_of(chunks: AsyncIterator[bytes], listing: Listing) -> AsyncIterator[list[dict[str, Any]]]:
    """The page's entries of the NDJSON listing, a batch per chunk the API wrote (its first entry
    alone, then every 200 entries or 0.2 s): the ones before the page are read and dropped, reading
    stops at the first entry after it (leaving the stream disconnects), and `listing` records how it
    ended."""
    seen = 0
    async for lines in _line_batches(chunks):
        batch: list[dict[str, Any]] = []
        for line in lines:
            item = json.loads(line)
            if "end" in item:
                listing.end = item["end"]
            elif "errors" in item:
                listing.error = "; ".join(str(e.get("message", "")) for e in item["errors"])
            elif seen >= listing.first + PAGE_ENTRIES:
                listing.more = True
            else:
                if seen >= listing.first:
                    batch.append(item)
                seen += 1
                continue
            break
        listing.entries += batch
        if batch:
            yield batch
        if listing.end is not None or listing.error is not None or listing.more:
            return


async def _line_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The complete lines of each chunk (a line split across chunks goes with the later one)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_LINE:
            raise ValueError("an NDJSON line too long")
        lines = [line for line in complete if line.strip()]
        if lines:
            yield lines
    if buffer.strip():
        yield [buffer]


def _directory(value: str | None) -> str:
    """A directory as the API takes it: `/`, `/etc/ssl` (the API refuses one that climbs out)."""
    text = (value or "/").strip()[:4096]
    return "/" + text.strip("/") if text.strip("/") else "/"


def _crumbs(directory: str) -> list[tuple[str, str]]:
    """(label, path) for each directory from the root down to `directory`."""
    crumbs = [("/", "/")]
    parts = [p for p in directory.split("/") if p]
    for i, part in enumerate(parts):
        crumbs.append((part, "/" + "/".join(parts[: i + 1])))
    return crumbs


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
