"""Responses for the hottest /v2 paths, whose encoded headers are built once and reused."""

from __future__ import annotations

from starlette.responses import Response

RawHeaders = list[tuple[bytes, bytes]]


class PreparedResponse(Response):
    """A 200 whose body and encoded headers were prepared ahead (Starlette re-encodes otherwise)."""

    def __init__(self, body: bytes, raw_headers: RawHeaders) -> None:
        self.status_code = 200
        self.body = body
        self.raw_headers = raw_headers
        self.background = None


def encode_headers(headers: dict[str, str]) -> RawHeaders:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
