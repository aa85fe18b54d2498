"""The management API called in-process: an ASGI request built from the portal's, with the user's
session cookie, handed to the /api/v1 mount the server routes network requests to (so the same
routing, authentication, authorization, audit and change announcements), its answer collected.

No socket and no HTTP client: a call costs the API's own work plus building two dictionaries.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlencode

from dockyard.api.management.sessions import COOKIE_NAME, CSRF_HEADER
from dockyard.ui.interfaces import ApiAnswer, Caller

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class InProcessApi:
    """`path` is given decoded, as the API's routes see it (`/repositories/a/b/artifacts/sha256:...`)."""

    def __init__(self, app: ASGIApp, mount_path: str = "/api/v1") -> None:
        self._app = app
        self._mount_path = mount_path

    async def call(
        self,
        caller: Caller,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> ApiAnswer:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [(b"host", caller.host.encode("latin-1")), (b"accept", b"application/json")]
        if caller.session is not None:
            headers.append((b"cookie", f"{COOKIE_NAME}={caller.session}".encode("latin-1")))
            if method not in SAFE_METHODS and caller.csrf_token:
                headers.append((CSRF_HEADER.lower().encode(), caller.csrf_token.encode("latin-1")))
        if body is not None:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
        if caller.request_id:
            headers.append((b"x-request-id", caller.request_id.encode("latin-1")))
        full_path = self._mount_path + path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": caller.scheme,
            "path": full_path,
            "raw_path": quote(full_path).encode("ascii"),
            "root_path": "",
            "query_string": urlencode(params or {}).encode("ascii"),
            "headers": headers,
            "client": caller.client,
            "server": None,
            "state": {},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        status = 500
        answer_headers: dict[str, str] = {}
        cookies: list[str] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for raw_name, raw_value in message.get("headers", []):
                    name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                    if name == "set-cookie":
                        cookies.append(value)
                    elif name in answer_headers:
                        answer_headers[name] += ", " + value
                    else:
                        answer_headers[name] = value
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return ApiAnswer(status, answer_headers, b"".join(chunks), cookies)


def session_from_cookies(cookies: list[str]) -> str | None:
    """The session cookie's value among an answer's Set-Cookie headers (POST /login's)."""
    for cookie in cookies:
        name, _, rest = cookie.partition("=")
        if name.strip() == COOKIE_NAME:
            value = rest.split(";", 1)[0].strip()
            return value or None
    return None
