"""Concurrent blob uploads (`limits.uploads_per_client`, `limits.uploads_total`).

An upload holds a place in its client's pool and in the registry's from the `POST` that opens it until
its `PUT` or `DELETE`; each `PATCH` claims the place again, which restarts its expiry
(`limits.upload_timeout`), so an upload abandoned by a client that went away gives its place back by
itself. A `PATCH` of an upload whose place expired takes one again, or is refused with 429 before its
body is read (the upload is kept: the client may retry). A `POST` refused for want of a place drops the
session it just made. Single-request uploads (`POST ...?digest=`) finish within their request and hold
no place.

The client is counted as the request limits count it (`limits.ClientKeys`). The pools
(`coordination.Slots`) are files in the datadir shared by the node's workers, or Redis shared by every
node. If the pools cannot be reached, uploads are let through (one warning a minute; the pools are
tried again every few seconds): the limit protects the registry, it must not stop it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.types import Scope

from dockyard.api.oci.gate import PRINCIPAL_KEY
from dockyard.api.oci.limits import ClientKeys
from dockyard.coordination.interfaces import Pool, Slots
from dockyard.errors import TooManyRequests
from dockyard.observability.metrics import Metrics

log = logging.getLogger("dockyard.api.oci.limits")

TOTAL_POOL = "uploads"
RETRY_AFTER_SECONDS = 5  # no way to tell when another upload will finish: a short wait, then retry
_WARN_EVERY_SECONDS = 60.0
RETRY_SLOTS_SECONDS = (
    5.0  # after the pools failed, uploads go unlimited this long before they are tried again
)


class UploadLimits:
    def __init__(
        self,
        slots: Slots,
        *,
        per_client: int,
        total: int,
        timeout: float,
        clients: ClientKeys | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self.per_client = per_client
        self.total = total
        self.timeout = timeout
        self.clients = clients or ClientKeys()
        self.metrics = metrics
        self._clock = clock
        self._last_warning = -math.inf
        self._slots_after = -math.inf

    async def claim(self, scope: Scope, upload_id: str) -> None:
        """Hold (or keep holding) a place for the upload; TooManyRequests when a pool is full."""
        pools = self._pools(scope)
        if not pools:
            return
        full = await self._call(self.slots.claim, pools, upload_id, self.timeout)
        if full is None:
            return
        which = "uploads_total" if full == TOTAL_POOL else "uploads_client"
        if self.metrics is not None:
            self.metrics.observe_limited(which)
        if full == TOTAL_POOL:
            message = f"the registry has {self.total} uploads open, its limit; try again shortly"
        else:
            message = f"you have {self.per_client} uploads open, your limit; finish one or try again shortly"
        raise TooManyRequests(message, retry_after=RETRY_AFTER_SECONDS)

    async def refresh(self, scope: Scope, upload_id: str) -> None:
        """After a long PATCH: start the place's expiry again (a full pool here changes nothing)."""
        pools = self._pools(scope)
        if pools:
            await self._call(self.slots.claim, pools, upload_id, self.timeout)

    async def release(self, scope: Scope, upload_id: str) -> None:
        pools = self._pools(scope)
        if pools:
            await self._call(self.slots.release, [name for name, _ in pools], upload_id)

    def _pools(self, scope: Scope) -> list[Pool]:
        client = self.clients.of(scope, scope.get(PRINCIPAL_KEY))
        if client is None:  # exempt
            return []
        pools = [(f"uploads:{client[0]}", self.per_client)] if self.per_client else []
        return [*pools, (TOTAL_POOL, self.total)] if self.total else pools

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._clock() < self._slots_after:
            return None
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except Exception as exc:  # Redis or the datadir away (any backend's error): let the upload through
            now = self._clock()
            self._slots_after = now + RETRY_SLOTS_SECONDS
            if now - self._last_warning >= _WARN_EVERY_SECONDS:
                self._last_warning = now
                log.warning("upload limits unavailable, uploads are not limited meanwhile: %s", exc)
            return None
