"""One check per credentials in flight: concurrent callers with the same key share the first one's result.

A client that has no token yet sends its burst (up to 64 connections) with the same new credentials,
and each argon2id verify costs 7 MiB and a core for ~25 ms: without this, each request ran its own
and a worker grew by hundreds of MiB (docs/benchmarks.md). Keys are digests of the credentials,
never the secrets. Nothing is kept once a check ends: remembering a success is the TTL caches' job,
and a failure is shared only with the identical attempts that were waiting for it.

`SingleFlight` is for code that runs in worker threads (the token endpoint's `TokenIssuer`);
`AsyncSingleFlight` for coroutines on one event loop (the /v2 gate's Basic credentials).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Thread-safe: the first caller with a key runs `compute`; callers arriving while it runs block
    until it ends and get the same value, or the same exception raised."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[bytes, Future[T]] = {}

    def run(self, key: bytes, compute: Callable[[], T]) -> T:
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                leader: Future[T] = Future()
                self._pending[key] = leader
        if pending is not None:
            return pending.result()
        try:
            value = compute()
        except BaseException as exc:
            leader.set_exception(exc)
            raise
        else:
            leader.set_result(value)
            return value
        finally:
            with self._lock:
                del self._pending[key]

    def __len__(self) -> int:
        """Checks in flight."""
        return len(self._pending)


class AsyncSingleFlight(Generic[T]):
    """The same for coroutines of one event loop. The check runs as a task of its own, so a caller
    that goes away (its client disconnected) leaves it running for the others."""

    def __init__(self) -> None:
        self._pending: dict[bytes, asyncio.Task[T]] = {}

    async def run(self, key: bytes, compute: Callable[[], Coroutine[Any, Any, T]]) -> T:
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._pending[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: bytes, done: asyncio.Task[T]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning when every caller went away

    def __len__(self) -> int:
        return len(self._pending)
