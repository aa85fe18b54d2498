"""The management API called in-process: an ASGI request built from the portal's, with the user's
session cookie, handed to the /api/v1 mount the server routes network requests to (so the same
routing, authentication, authorization, audit and change announcements), its answer collected.

No socket and no HTTP client: a call costs the API's own work plus building two dictionaries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

from dockyard.api.management.sessions import COOKIE_NAME, CSRF_HEADER
from dockyard.ui.interfaces import ApiAnswer, ApiStream, Caller

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
log = logging.getLogger("dockyard.ui")


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
        scope = self._scope(caller, method, path, params, body is not None, len(payload))
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
                _headers(message, answer_headers, cookies)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return ApiAnswer(status, answer_headers, b"".join(chunks), cookies)

    @asynccontextmanager
    async def stream(
        self, caller: Caller, path: str, *, params: dict[str, str] | None = None
    ) -> AsyncIterator[ApiStream]:
        """The API runs in a task of its own; its body messages pass through a small queue, so it
        writes no further ahead than STREAM_QUEUE messages. Leaving the block tells it the client has
        gone (an `http.disconnect`, which a streaming answer listens for) and cancels it."""
        scope = self._scope(caller, "GET", path, params, False, 0)
        messages: asyncio.Queue[Message | None] = asyncio.Queue(STREAM_QUEUE)
        gone = asyncio.Event()
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if gone.is_set():
                raise PortalLeft("the portal stopped reading")
            await messages.put(message)

        async def run() -> None:
            try:
                await self._app(scope, receive, send)
            finally:
                if not gone.is_set():
                    await messages.put(None)

        task = asyncio.create_task(run())
        _RUNNING.add(task)
        task.add_done_callback(_wound_down)
        try:
            start = await messages.get()
            if start is None or start["type"] != "http.response.start":
                await task  # the API failed before answering: its exception, if any, goes on
                raise RuntimeError("the API gave no answer")
            status, headers, cookies = int(start["status"]), {}, []  # type: ignore[var-annotated]
            _headers(start, headers, cookies)

            async def chunks() -> AsyncIterator[bytes]:
                while True:
                    message = await messages.get()
                    if message is None:
                        return
                    if message["type"] == "http.response.body":
                        if message.get("body"):
                            yield message["body"]
                        if not message.get("more_body", False):
                            return

            if 200 <= status < 300:
                yield ApiStream(status, headers, chunks())
            else:
                body = b"".join([chunk async for chunk in chunks()])
                error = ApiAnswer(status, headers, body, cookies)
                yield ApiStream(status, headers, _no_chunks(), error)
        finally:
            gone.set()
            if not task.done():
                task.cancel()

    def _scope(
        self,
        caller: Caller,
        method: str,
        path: str,
        params: dict[str, str] | None,
        has_body: bool,
        length: int,
    ) -> dict[str, Any]:
        headers = [(b"host", caller.host.encode("latin-1")), (b"accept", b"application/json")]
        if caller.session is not None:
            headers.append((b"cookie", f"{COOKIE_NAME}={caller.session}".encode("latin-1")))
            if method not in SAFE_METHODS and caller.csrf_token:
                headers.append((CSRF_HEADER.lower().encode(), caller.csrf_token.encode("latin-1")))
        if has_body:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
        if caller.request_id:
            headers.append((b"x-request-id", caller.request_id.encode("latin-1")))
        full_path = self._mount_path + path
        return {
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


STREAM_QUEUE = 4  # body messages the API may write ahead of the portal
_RUNNING: set[asyncio.Task[None]] = set()  # streams being wound down (a task needs a reference)


class PortalLeft(OSError):
    """What an API task's `send` raises once the portal has stopped reading its stream."""


def _wound_down(task: asyncio.Task[None]) -> None:
    """An API task that ended on PortalLeft ended as it should: its exception is taken here, or asyncio
    would log it as never retrieved. Any other failure is left for asyncio to report."""
    _RUNNING.discard(task)
    if task.cancelled():
        return
    error = task.exception()  # marks it retrieved
    if error is not None and not isinstance(error, PortalLeft):
        log.error("the API failed while streaming to the portal", exc_info=error)


def _headers(start: Message, into: dict[str, str], cookies: list[str]) -> None:
    """An answer's headers: lower-case names, repeated ones joined with ", ", Set-Cookie apart."""
    for raw_name, raw_value in start.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "set-cookie":
            cookies.append(value)
        elif name in into:
            into[name] += ", " + value
        else:
            into[name] = value


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


def session_from_cookies(cookies: list[str]) -> str | None:
    """The session cookie's value among an answer's Set-Cookie headers (POST /login's)."""
    for cookie in cookies:
        name, _, rest = cookie.partition("=")
        if name.strip() == COOKIE_NAME:
            value = rest.split(";", 1)[0].strip()
            return value or None
    return None
