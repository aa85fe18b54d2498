"""Responses for the hottest /v2 paths, whose encoded headers are built once and reused."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from dockyard.api.oci.errors import API_VERSION_HEADER

RawHeaders = list[tuple[bytes, bytes]]


class PreparedResponse(Response):
    """A response (200 unless told) whose body and encoded headers were prepared ahead (Starlette
    re-encodes otherwise)."""

    def __init__(self, body: bytes, raw_headers: RawHeaders, status_code: int = 200) -> None:
        self.status_code = status_code
        self.body = body
        self.raw_headers = raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Response.__call__ without what these never have (a background task, a websocket scope).
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def encode_headers(headers: dict[str, str]) -> RawHeaders:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


(API_VERSION_RAW,) = encode_headers(API_VERSION_HEADER)  # the one header every /v2 answer carries


def created(location: str, digest: str) -> PreparedResponse:
    """201 Created for a blob or manifest stored at `location`, with the headers Starlette would have
    encoded from a dict of them (names in lower case), built without it: every mount, blob commit
    and manifest PUT answers one. A new header list each time (a middleware may add to it)."""
    raw = [
        API_VERSION_RAW,
        (b"location", location.encode("latin-1")),
        (b"docker-content-digest", digest.encode("latin-1")),
        (b"content-length", b"0"),
    ]
    return PreparedResponse(b"", raw, status_code=201)
