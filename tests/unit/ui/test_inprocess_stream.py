"""InProcessApi.stream: the portal reads an API answer as it streams, the API writes no further ahead
than a few messages, and leaving early disconnects it (a listing of a huge layer stops being read)."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dockyard.api.management.streaming import ClosingStreamingResponse
from dockyard.ui.interfaces import Caller
from dockyard.ui.services import STREAM_QUEUE, InProcessApi

CALLER = Caller("session-value", "csrf", ("127.0.0.1", 1), "http", "localhost")


class Endless:
    """A sync body as the file routes' (run in a thread): counts the lines made, notes its closing."""

    def __init__(self) -> None:
        self.made = 0
        self.closed = threading.Event()

    def lines(self) -> Iterator[bytes]:
        try:
            while True:
                self.made += 1
                yield b'{"n": %d}\n' % self.made
        finally:
            self.closed.set()


def app_with(body: Endless) -> Starlette:
    async def listing(request: Request) -> ClosingStreamingResponse:  # as the API's file routes answer
        assert request.cookies["dockyard_session"] == "session-value"
        return ClosingStreamingResponse(body.lines(), media_type="application/x-ndjson")

    async def refused(request: Request) -> JSONResponse:
        return JSONResponse({"errors": [{"code": "NOT_FOUND", "message": "no"}]}, 404)

    return Starlette(routes=[Route("/api/v1/list", listing), Route("/api/v1/refused", refused)])


def within(seconds: float, main: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run(main()) in a thread of its own: a stream that never stops fails the test, not
    hangs it (the thread is left behind)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(main())), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"still running after {seconds} s"
    return result[0]


def test_leaving_early_stops_the_api_and_it_never_runs_far_ahead() -> None:
    body = Endless()
    api = InProcessApi(app_with(body))

    async def read_three() -> list[bytes]:
        got: list[bytes] = []
        async with api.stream(CALLER, "/list") as answer:
            assert answer.ok and answer.headers["content-type"] == "application/x-ndjson"
            async for chunk in answer.chunks:
                got.append(chunk)
                if len(got) == 3:
                    await asyncio.sleep(0.2)  # the API may fill the queue meanwhile, no more
                    ahead = body.made
                    break
        assert ahead <= 3 + STREAM_QUEUE + 2, ahead  # the queue, the message in hand, one in the thread
        for _ in range(250):  # the API's body is closed once it hears of the disconnect, not at a GC
            if body.closed.is_set():
                break
            await asyncio.sleep(0.02)
        # Asked here, while the loop runs: its shutdown closes every generator left open.
        assert body.closed.is_set(), "the API's body was left open after the portal left"
        return got

    got = within(10, read_three)
    assert got == [b'{"n": 1}\n', b'{"n": 2}\n', b'{"n": 3}\n']


def test_a_refusal_comes_whole() -> None:
    api = InProcessApi(app_with(Endless()))

    async def read() -> tuple[int, str]:
        async with api.stream(CALLER, "/refused") as answer:
            assert not answer.ok and answer.error is not None
            return answer.status, answer.error.message

    assert within(10, read) == (404, "no")


def test_leaving_early_leaves_no_error_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """The API task ends on the error its `send` raises once the portal left: expected, so not logged
    as a task exception nobody retrieved (the authorization matrix's server logged ~60 per pass)."""
    body = Endless()
    api = InProcessApi(app_with(body))

    async def read_one_and_leave() -> None:
        async with api.stream(CALLER, "/list") as answer:
            async for _chunk in answer.chunks:
                break
        for _ in range(250):
            if body.closed.is_set():
                break
            await asyncio.sleep(0.02)

    for _ in range(20):
        within(10, read_one_and_leave)
    gc.collect()
    assert "never retrieved" not in caplog.text
    assert "stopped reading" not in caplog.text
