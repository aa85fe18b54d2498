"""What the portal needs from the management API: one call, made as the signed-in user."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a portal request comes from, as the API is to see it: the session cookie's value (None
    before login), its CSRF token, and the client's address, scheme and host (the login limiter and
    the audit log see the real client, not the portal)."""

    session: str | None
    csrf_token: str | None
    client: tuple[str, int] | None
    scheme: str
    host: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", " (not Set-Cookie)
    body: bytes
    cookies: list[str] = field(default_factory=list)  # each Set-Cookie header's value

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def total(self) -> int:
        """A list's X-Total-Count: matching items over all pages."""
        return int(self.headers.get("x-total-count", "0"))

    @property
    def message(self) -> str:
        """The API's error message (`{"errors": [{"message": ...}]}`), for the page to show."""
        try:
            errors = json.loads(self.body).get("errors") or []
            return "; ".join(str(e.get("message", "")) for e in errors) or f"error {self.status}"
        except (ValueError, AttributeError):
            return f"error {self.status}"


class ManagementApi(Protocol):
    """The management API as the portal reaches it. `path` is relative to /api/v1 (`/projects`)."""

    async def call(
        self,
        caller: Caller,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> ApiAnswer:
        """Make the call with the caller's session (and, on unsafe methods, its CSRF token)."""
        ...

    def stream(
        self, caller: Caller, path: str, *, params: dict[str, str] | None = None
    ) -> AbstractAsyncContextManager[ApiStream]:
        """A GET whose answer is read chunk by chunk, with backpressure: the API produces no more than
        the portal reads; leaving the block early disconnects."""
        ...


@dataclass(frozen=True, slots=True)
class ApiStream:
    """An answer read as it comes (an NDJSON listing, a file's bytes): status and headers first, then
    `chunks`; leaving the `stream` block early disconnects, as a client closing its connection does
    (the API stops reading the layer)."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    error: ApiAnswer | None = None  # a refusal (not 2xx): its whole body, read already

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class SessionReader(Protocol):
    """Reads the session cookie the API issued (`api.management.sessions.SessionCodec`)."""

    def read(self, value: str) -> Any:
        """The session (`.name`, `.csrf_token`), or None when forged, damaged or expired."""
        ...
