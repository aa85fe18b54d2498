"""Responses for the hottest /v2 paths, whose encoded headers are built once and reused."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

RawHeaders = list[tuple[bytes, bytes]]


class PreparedResponse(Response):
    """A 200 whose body and encoded headers were prepared ahead (Starlette re-encodes otherwise)."""

    def __init__(self, body: bytes, raw_headers: RawHeaders) -> None:
        self.status_code = 200
        self.body = body
        self.raw_headers = raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Response.__call__ without what these never have (a background task, a websocket scope).
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def encode_headers(headers: dict[str, str]) -> RawHeaders:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
