"""An ASGI app built on its first request: for parts of the server most processes never use.

The management API (FastAPI, pydantic models for every resource, the OpenAPI machinery) is several
MiB of modules per worker process; a registry that is only pushed to and pulled from never loads
them. The first request under its mount imports and builds it in a thread (the event loop serves on
meanwhile); requests that arrive during the build wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send


class LazyApp:
    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def built(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            app = await self._built_app()
        await app(scope, receive, send)

    async def _built_app(self) -> ASGIApp:
        if self._lock is None:  # made on the event loop that serves, not at construction
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._app is None:
                self._app = await anyio.to_thread.run_sync(self._build)
        return self._app
