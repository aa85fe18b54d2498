"""A cheaper hand-off than anyio's worker threads for the /v2 hot paths' point reads that cannot run
on the event loop: a manifest or a blob size that missed the caches, where db.lookups' `one_async`
hands it to a thread (a SQLite read that would wait for a lock, a PostgreSQL lookup with a type
libpq is not used for there, an in-memory SQLite; the others run on the loop).
`anyio.to_thread.run_sync` costs ~40 µs of CPU per call here (its capacity limiter, its worker
bookkeeping, the cancel scope around the wait); a few threads of our own that take calls from one
`queue.SimpleQueue` (C, no lock of ours) and hand the result back with `call_soon_threadsafe` cost
~11 µs (docs/benchmarks.md). A point read holds its thread for one round trip, so `THREADS` of them
serve thousands a second; more wait in the queue, first come first served, as they
would for one of the lookups' PostgreSQL connections (`db.lookups`, as many at once).

Only for short calls that never wait on anything but the database: the threads are shared by every
request of the process. A caller that is cancelled (its client went away) stops waiting at once; the
read finishes on its thread and its answer is dropped.

The small writes of a push (a cross-repository mount, a manifest PUT: one short write transaction
each) use a pool of their own the same way (`call_through`, `WRITE_THREADS`), except that a cancelled
caller still waits for its write to end, as it would for anyio's worker thread: a write a request
started is over when the request is (the drain waits for requests, `api/drain.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = 4  # db.lookups.POSTGRES_LOOKUP_POOL_SIZE: the connections kept for these reads
# Small writes at once per process (SQLite runs one at a time anyway; on PostgreSQL, fewer than the
# write engine's pool of 10): more wait in the queue, as they would for a connection.
WRITE_THREADS = 8

Loop = asyncio.AbstractEventLoop
_Call = tuple[Loop, "asyncio.Future[Any]", contextvars.Context, Callable[..., Any], tuple[Any, ...]]


class PointReads:
    """`await reads.call(fn, *args)`: `fn(*args)` on one of the threads, in the caller's context
    (its log fields); its result or its exception, as `anyio.to_thread.run_sync` gives them."""

    def __init__(self, threads: int = THREADS, name: str = "point-read") -> None:
        self._threads = threads
        self._name = name
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._started_in: int | None = None  # the pid that started the threads (none survive a fork)
        self._lock = threading.Lock()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._started_in != os.getpid():
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, contextvars.copy_context(), fn, args))
        return await future

    async def call_through(self, fn: Callable[..., T], *args: Any) -> T:
        """As `call`, but a cancelled caller waits for `fn` to end before it is cancelled (however
        often it is cancelled meanwhile): for writes."""
        if self._started_in != os.getpid():
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, contextvars.copy_context(), fn, args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait((future,))  # never cancels the future, nor raises its exception
            if not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning for a write that failed
            raise

    def _start(self) -> None:
        with self._lock:
            if self._started_in == os.getpid():
                return
            self._calls = queue.SimpleQueue()  # a forked child's copy may hold its parent's calls
            for number in range(self._threads):
                name = f"{self._name}-{number}"
                threading.Thread(target=self._serve, args=(self._calls,), name=name, daemon=True).start()
            self._started_in = os.getpid()

    @staticmethod
    def _serve(calls: queue.SimpleQueue[_Call]) -> None:
        while True:
            loop, future, context, fn, args = calls.get()
            try:
                result = context.run(fn, *args)
            except BaseException as exc:  # handed to the caller, as a worker thread would
                _hand_back(loop, _fail, future, exc)
            else:
                _hand_back(loop, _succeed, future, result)


def _hand_back(loop: Loop, settle: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown): nobody waits
        loop.call_soon_threadsafe(settle, *args)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
