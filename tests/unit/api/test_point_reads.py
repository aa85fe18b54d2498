"""The /v2 point reads' hand-off (`api.oci.point_reads`): what a call on its threads gives back is what
the call itself gives (its result, its exception), in the caller's context; concurrent calls all
finish, more than there are threads; a caller that stops waiting does not stop the others."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from dockyard.api.oci.point_reads import PointReads
from dockyard.errors import ManifestUnknown

pytestmark = pytest.mark.db_independent("no database: the hand-off only")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_a_call_gives_its_result_or_its_exception_off_the_loop() -> None:
    reads = PointReads(threads=2)

    def read(reference: str) -> tuple[str, bool]:
        if reference == "missing":
            raise ManifestUnknown(detail={"reference": reference})
        return reference, threading.current_thread() is threading.main_thread()

    async def run() -> None:
        assert await reads.call(read, "latest") == ("latest", False)
        with pytest.raises(ManifestUnknown) as raised:
            await reads.call(read, "missing")
        assert raised.value.detail == {"reference": "missing"}

    asyncio.run(run())


def test_a_call_runs_in_the_callers_context() -> None:
    reads = PointReads(threads=1)

    async def request(number: int) -> str:
        REQUEST_ID.set(f"request-{number}")
        return await reads.call(REQUEST_ID.get)

    async def run() -> list[str]:
        return list(await asyncio.gather(*(request(number) for number in range(3))))

    assert asyncio.run(run()) == ["request-0", "request-1", "request-2"]


def test_more_calls_than_threads_all_finish_and_a_cancelled_one_stops_no_other() -> None:
    reads = PointReads(threads=2)
    release = threading.Event()

    def slow(value: int) -> int:
        release.wait(10)
        return value

    async def run() -> list[int]:
        abandoned = asyncio.ensure_future(reads.call(slow, -1))
        waiting = [asyncio.ensure_future(reads.call(slow, value)) for value in range(8)]
        await asyncio.sleep(0)
        abandoned.cancel()  # its client went away
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        return list(await asyncio.gather(*waiting))

    assert asyncio.run(run()) == list(range(8))


def test_calls_from_another_event_loop_come_back_to_it() -> None:
    reads = PointReads(threads=1)
    for round_number in range(2):  # a new loop each time, the same threads
        assert asyncio.run(reads.call(abs, -round_number)) == round_number


def test_a_cancelled_write_is_waited_for_and_gives_its_result_or_exception() -> None:
    """`call_through` (the small writes of a push): the caller's cancellation takes effect only once
    the write has ended, whatever it gave; uncancelled, it gives what the write gives."""
    writes = PointReads(threads=1, name="small-write")
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def write(fail: bool) -> str:
        started.set()
        release.wait(10)
        ended.set()
        if fail:
            raise ManifestUnknown(detail={"reference": "gone"})
        return threading.current_thread().name

    async def cancelled(fail: bool) -> None:
        for event in (started, release, ended):
            event.clear()
        task = asyncio.ensure_future(writes.call_through(write, fail))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for its write
        task.cancel()  # twice: still waiting
        await asyncio.sleep(0.05)
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended.is_set()

    async def run() -> None:
        await cancelled(fail=False)
        await cancelled(fail=True)
        release.set()
        assert await writes.call_through(write, False) == "small-write-0"
        with pytest.raises(ManifestUnknown):
            await writes.call_through(write, True)

    asyncio.run(run())
