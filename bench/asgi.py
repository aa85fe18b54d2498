"""The in-process benches' driver: one HTTP request, or the lifespan, straight into an ASGI app on the
running event loop, without sockets or an HTTP client (what a Granian worker hands the app)."""

from __future__ import annotations

import asyncio
from typing import Any

Headers = list[tuple[bytes, bytes]]


def http_scope(method: str, path: str, headers: Headers, query: bytes = b"") -> dict[str, Any]:
    """The scope of one HTTP/1.1 request as Granian hands it to the app; `headers` as sent (the host
    header first)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
        "state": {},
    }


async def request(
    app: Any, method: str, path: str, headers: Headers, query: bytes = b"", body: bytes = b""
) -> int:
    """Send one request; its status. `headers` as ASGI lists them (content-length is added)."""
    length = (b"content-length", str(len(body)).encode())
    scope = http_scope(method, path, [(b"host", b"registry.bench"), *headers, length], query)
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


class Lifespan:
    """The app's lifespan on one ASGI call: startup, then (later) shutdown."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _step(self, phase: str) -> None:
        await self.inbox.put({"type": f"lifespan.{phase}"})
        message = await asyncio.wait_for(self.outbox.get(), 60)
        if not message["type"].endswith(".complete"):
            raise RuntimeError(f"lifespan {phase}: {message}")

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self._step("startup")

    async def shutdown(self) -> None:
        await self._step("shutdown")
        assert self.task is not None
        await self.task
