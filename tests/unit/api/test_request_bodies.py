"""A /v2 answer given before the request's body was read: the rest of the body is read first, within a
time limit; when it cannot be (a client waiting for 100 Continue, one still sending at the limit) the
answer closes the connection. (The real server's side: tests/integration/test_streamed_bodies.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.responses import Response
from starlette.types import Message

from dockyard.api.oci import request_bodies
from dockyard.api.oci.request_bodies import finish_unread_body, watch_body

pytestmark = pytest.mark.db_independent


def scope_of(method: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
    }


class Client:
    """The receive side of a client sending `chunks`, one every `pause` seconds, then (stall=True)
    nothing more for ever."""

    def __init__(self, chunks: int, stall: bool = False, pause: float = 0.0) -> None:
        self.left = chunks
        self.stall = stall
        self.pause = pause
        self.received = 0

    async def __call__(self) -> Message:
        if self.left == 0 and self.stall:
            await asyncio.Event().wait()
        await asyncio.sleep(self.pause)
        self.left -= 1
        self.received += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": self.left > 0 or self.stall}


def refuse(scope: dict[str, Any], client: Client, read_first: int = 0) -> tuple[Response, Any]:
    body = watch_body(scope, client)
    assert body is not None
    response = Response(b"refused", status_code=404)

    async def run() -> None:
        for _ in range(read_first):  # what the handler read before it refused
            await body()
        await finish_unread_body(scope, body, response)

    asyncio.run(run())
    return response, body


def test_the_rest_of_the_body_is_read_before_the_refusal_and_the_connection_stays_open() -> None:
    client = Client(chunks=50)
    response, body = refuse(scope_of("PUT", {"content-length": str(50 * 1024)}), client, read_first=3)
    assert client.received == 50 and body.finished
    assert "connection" not in response.headers


def test_a_client_that_stops_sending_is_answered_after_the_idle_limit_and_the_answer_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(request_bodies, "DRAIN_IDLE_SECONDS", 0.2)
    client = Client(chunks=5, stall=True)
    response, body = refuse(scope_of("PATCH", {"transfer-encoding": "chunked"}), client)
    assert client.received == 5 and not body.finished
    assert response.headers["connection"] == "close"


def test_a_body_still_coming_at_the_time_limit_is_cut_off_and_the_answer_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(request_bodies, "DRAIN_SECONDS", 0.5)
    client = Client(chunks=1000, pause=0.05)  # never idle for DRAIN_IDLE_SECONDS, 50 s in all
    response, body = refuse(scope_of("PUT", {"content-length": str(1000 * 1024)}), client)
    assert 3 <= client.received < 1000 and not body.finished
    assert response.headers["connection"] == "close"


def test_a_client_waiting_for_100_continue_is_not_asked_for_its_body() -> None:
    client = Client(chunks=4)
    headers = {"content-length": "4096", "expect": "100-continue"}
    response, _ = refuse(scope_of("PUT", headers), client)
    assert client.received == 0  # receiving would have sent "100 Continue"
    assert response.headers["connection"] == "close"


def test_one_that_got_its_100_continue_from_the_handler_is_read_to_the_end() -> None:
    client = Client(chunks=4)
    headers = {"content-length": "4096", "expect": "100-continue"}
    response, _ = refuse(scope_of("PUT", headers), client, read_first=1)
    assert client.received == 4 and "connection" not in response.headers


def test_requests_without_a_body_are_not_watched() -> None:
    client = Client(chunks=1)
    assert watch_body(scope_of("GET", {"content-length": "10"}), client) is None
    assert watch_body(scope_of("HEAD", {}), client) is None
    assert watch_body(scope_of("PUT", {"content-length": "0"}), client) is None
    assert watch_body(scope_of("POST", {}), client) is None
