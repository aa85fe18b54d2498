"""Request ids, metrics and access logs for every HTTP request, as a pure ASGI middleware.

Not Starlette's BaseHTTPMiddleware: that one re-streams every body through extra tasks, and this wraps the
/v2 hot path. Per request it does a header scan, two small wrappers around receive/send and one log call.

The metrics' `route` label is the matched route's template (`/v2/{name:path}/blobs/{digest}`), read from
`scope["route"]`, which Starlette's router sets on the scope it is given. An app that routes by itself can
name its template in `scope["dockyard.route"]`. Requests no route matched are labelled "unmatched": never
the raw path, so the number of series stays bounded.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.errors import OCICode
from dockyard.observability.logging import bind_request_id, clear_request_context, get_logger
from dockyard.observability.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
ROUTE_OVERRIDE_KEY = "dockyard.route"
PEER_KEY = "dockyard.peer"  # set by api/forwarded.py: the connection's peer when a proxy named the client
REQUEST_ID_KEY = "dockyard.request_id"  # handlers read the id here (e.g. to put it in error bodies)
UNMATCHED = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
# /v2 operations for registry_request_failures_total, by method; anything else counts as a pull (reads).
WRITE_OPERATIONS = {"PUT": "push", "POST": "push", "PATCH": "push", "DELETE": "delete"}
OCI_CODES = frozenset(code.value for code in OCICode)
_ERROR_CODE = re.compile(rb'"code"\s*:\s*"([A-Z_]{1,40})"')
NO_CODE = "NONE"  # an error answered without the spec's body (HEAD, or a bare 500)
# An incoming id is kept only if it is short and plain, so it cannot forge log lines or bloat them.
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")


class _RequestIds:
    """Random 64-bit request ids, hex, from os.urandom taken 4 KiB at a time: one system call per 512
    requests, not one each (`secrets.token_hex(8)` was several µs of every /v2 request). A forked
    child forgets its parent's unused bytes, so no two processes hand out the same ids."""

    BATCH = 512

    def __init__(self) -> None:
        self._pool = ""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._at = "", 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = secrets.token_hex(8 * self.BATCH), 0
        self._at = at + 16
        return self._pool[at : at + 16]


new_request_id = _RequestIds().next


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics | None,
        access_log: bool = True,
        extra_headers: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.app = app
        # http.headers from the config (registry:2's), added to every response.
        self.extra_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, values in (extra_headers or {}).items()
            for value in values
        ]
        self.metrics = metrics
        self.access_log = access_log
        self.logger = get_logger("dockyard.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        bound = bind_request_id(request_id)
        root_path = scope.get("root_path", "")
        header_value = request_id.encode()
        status = 0
        request_bytes = 0
        response_bytes = 0
        sent_headers: Any = ()  # the response's, as the app sent them
        error_code: str | None = None  # the OCI error code of a /v2 error answer
        # The server drops a body sent for HEAD (Starlette's Response sends one): it is not traffic.
        counts_body = scope["method"] != "HEAD"

        async def counting_receive() -> Message:
            nonlocal request_bytes
            message = await receive()
            if message["type"] == "http.request":
                request_bytes += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            nonlocal status, response_bytes, sent_headers, error_code
            kind = message["type"]
            if kind == "http.response.body":
                if counts_body:
                    response_bytes += len(message.get("body", b""))
                if status >= 400 and error_code is None:  # errors only: nothing on the success path
                    error_code = oci_error_code(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                sent_headers = message.get("headers", ())
                headers = [*sent_headers, (REQUEST_ID_HEADER, header_value), *self.extra_headers]
                message = {**message, "headers": headers}
            elif kind == "http.response.pathsend" and counts_body:
                # The server sends the file; its size is the header's.
                response_bytes += _content_length(sent_headers)
            elif kind == "http.response.zerocopysend" and counts_body:
                response_bytes += message.get("count") or _content_length(sent_headers)
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        except BaseException:
            status = status or 500  # an error before the response started: the server answers 500
            raise
        finally:
            self._record(scope, root_path, status, started, request_bytes, response_bytes, request_id)
            if status >= 400 and self.metrics is not None:
                self._record_failure(scope, root_path, status, error_code)
            clear_request_context(bound)

    def _record_failure(self, scope: Scope, root_path: str, status: int, code: str | None) -> None:
        route = route_label(scope, root_path)
        if not route.startswith("/v2/") or route == "/v2/":  # the version check's 401 is a challenge
            return
        assert self.metrics is not None
        operation = WRITE_OPERATIONS.get(scope["method"], "pull")
        self.metrics.observe_failure(operation, status, code or NO_CODE)

    def _record(
        self,
        scope: Scope,
        root_path: str,
        status: int,
        started: float,
        request_bytes: int,
        response_bytes: int,
        request_id: str,
    ) -> None:
        seconds = time.perf_counter() - started
        route = route_label(scope, root_path)
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        if self.metrics is not None:
            self.metrics.observe_request(route, method, status, seconds, request_bytes, response_bytes)
        if self.access_log:
            client = scope.get("client")
            peer = scope.get(PEER_KEY)  # the proxy, when a trusted one reported the client
            self.logger.info(
                "request",
                method=scope["method"],
                route=route,
                path=scope["path"],  # never the query string: it may carry credentials
                status=status,
                request_bytes=request_bytes,
                response_bytes=response_bytes,
                duration_ms=round(seconds * 1000, 2),
                request_id=request_id,
                client=_address(client),
                **({"proxy": _address(peer)} if peer else {}),
            )


def oci_error_code(body: bytes) -> str:
    """The first code of an OCI error body (`{"errors": [{"code": ...}]}`), from its first 512 bytes;
    one of the spec's codes, "OTHER" for anything else, NO_CODE without one."""
    found = _ERROR_CODE.search(body, 0, 512)
    if found is None:
        return NO_CODE
    code = found.group(1).decode()
    return code if code in OCI_CODES else "OTHER"


def route_label(scope: Scope, root_path: str = "") -> str:
    """The template of the route that answered, with the prefixes of the mounts it sits under."""
    override = scope.get(ROUTE_OVERRIDE_KEY)
    if override:
        return str(override)
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return UNMATCHED
    # Each Mount on the way appended the part of the path it matched to root_path.
    mounted = scope.get("root_path", "")[len(root_path) :]
    if isinstance(route, Mount):  # a mounted app that is not a router: the mount matched everything
        return f"{mounted}/{{path}}"
    return f"{mounted}{path}"


def _content_length(headers: Any) -> int:
    """The Content-Length among a response's headers (the last one, if several), or 0."""
    length = 0
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            length = int(value)
    return length


def _address(client: tuple[str, int] | None) -> str | None:
    if not client:
        return None
    return f"{client[0]}:{client[1]}" if client[1] else client[0]  # a forwarded client has no port


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_REQUEST_ID.match(value) else None
    return None
