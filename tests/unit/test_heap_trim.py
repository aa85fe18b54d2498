"""The HTTP workers give freed heap pages back to the system after work (app.housekeeping)."""

from __future__ import annotations

import asyncio
import time

import pytest

from dockyard.app import housekeeping

pytestmark = pytest.mark.db_independent


class FakeLibc:
    def __init__(self) -> None:
        self.trims: list[int] = []

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(pad)
        return 1


def run_for(seconds: float, work: bool, libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(housekeeping, "libc", lambda: libc)

    async def scenario() -> None:
        task = asyncio.create_task(housekeeping.trim_heap_forever(interval=0.02, after_cpu=0.01))
        deadline = time.monotonic() + seconds
        while work and time.monotonic() < deadline:  # CPU in this process, as requests would spend it
            sum(range(20_000))
            await asyncio.sleep(0)
        if not work:
            await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(scenario())


def test_a_worker_that_worked_trims_its_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    run_for(0.3, work=True, libc=libc, monkeypatch=monkeypatch)
    assert libc.trims and set(libc.trims) == {0}


def test_an_idle_worker_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    run_for(0.3, work=False, libc=libc, monkeypatch=monkeypatch)
    assert libc.trims == []


def test_one_trimmer_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests build many apps in one process: one trims for all, and another takes over when it stops.
    libc = FakeLibc()
    monkeypatch.setattr(housekeeping, "libc", lambda: libc)

    async def scenario() -> None:
        first = asyncio.create_task(housekeeping.trim_heap_forever(interval=0.01, after_cpu=0))
        await asyncio.sleep(0.05)
        second = housekeeping.trim_heap_forever(interval=0.01, after_cpu=0)
        await asyncio.wait_for(second, 1)  # returns at once: the first one trims
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        third = asyncio.create_task(housekeeping.trim_heap_forever(interval=0.01, after_cpu=0))
        await asyncio.sleep(0.05)
        assert not third.done()
        third.cancel()

    asyncio.run(scenario())
    assert libc.trims


def test_without_malloc_trim_it_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise OSError("no C library")

    monkeypatch.setattr(housekeeping, "libc", missing)
    asyncio.run(asyncio.wait_for(housekeeping.trim_heap_forever(interval=0.01), 1))
