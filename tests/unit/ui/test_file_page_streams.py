"""The layer browser's page streams: its head and the first rows reach the browser while the API is
still reading the layer (the first listing of a directory at the end of a 500 MB layer waits for the
whole pass; the page must not)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from dockyard.ui.interfaces import ApiAnswer, ApiStream, Caller
from dockyard.ui.pages import Portal, build_portal
from tests.support.asgi import http_scope
from tests.unit.ui.test_inprocess_stream import within

LAYER = "sha256:" + "ab" * 32
ARTIFACT = {"digest": "sha256:" + "cd" * 32, "manifest": {"layers": [{"digest": LAYER, "size": 1}]}}


@dataclass
class Session:
    name: str = "alice"
    csrf_token: str = "token"


class Sessions:
    def read(self, value: str) -> Session | None:
        return Session() if value == "cookie" else None


class SlowLayerApi:
    """The artifact at once; the listing's first entry at once, the rest when `more` is set."""

    def __init__(self) -> None:
        self.more = asyncio.Event()
        self.left = False  # the portal left the stream's block

    async def call(self, caller: Caller, method: str, path: str, **_: Any) -> ApiAnswer:
        return ApiAnswer(200, {}, json.dumps(ARTIFACT).encode())

    @asynccontextmanager
    async def stream(
        self, caller: Caller, path: str, *, params: dict[str, str] | None = None
    ) -> AsyncIterator[ApiStream]:
        async def chunks() -> AsyncIterator[bytes]:
            yield _entry("first-file") + b"\n"
            await self.more.wait()
            yield _entry("last-file") + b"\n" + json.dumps({"end": {"entries": 2}}).encode() + b"\n"

        try:
            yield ApiStream(200, {"content-type": "application/x-ndjson"}, chunks())
        finally:
            self.left = True


def _entry(name: str) -> bytes:
    entry = {"path": f"/{name}", "name": name, "type": "file", "size": 1, "mode": "0644",
             "mode_string": "-rw-r--r--", "uid": 0, "gid": 0, "link": None, "whiteout": False,
             "opaque": False, "layer": None}
    return json.dumps(entry).encode()


PATH = f"/repositories/team/app/-/artifacts/v1/layers/{LAYER}/files"
SCOPE = http_scope("GET", PATH, root_path="", headers=((b"cookie", b"dockyard_ui=cookie"),))


def test_the_first_rows_arrive_before_the_layer_is_read_to_its_end() -> None:
    async def main() -> tuple[str, str]:
        api = SlowLayerApi()
        app = build_portal(api, Sessions(), 3600)
        scope = dict(SCOPE)
        received: list[bytes] = []
        first_row = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()  # the browser stays
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                received.append(message.get("body", b""))
                if b"first-file" in b"".join(received):
                    first_row.set()

        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(first_row.wait(), 5)  # while the API still holds the rest back
        before = b"".join(received).decode()
        api.more.set()
        await asyncio.wait_for(task, 5)
        return before, b"".join(received).decode()

    before, page = within(10, main)
    assert "<h1>Layer 1 of 1" in before and "first-file" in before and "last-file" not in before
    assert "last-file" in page and "2 entries." in page and page.rstrip().endswith("</html>")


def test_a_page_that_fails_before_its_first_byte_leaves_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Portal, request: Any, template: str, **context: Any) -> str:
        raise RuntimeError("a template error")

    monkeypatch.setattr(Portal, "html", broken)

    async def main() -> bool:
        api = SlowLayerApi()
        app = build_portal(api, Sessions(), 3600)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            pass

        with pytest.raises(RuntimeError):
            await app(dict(SCOPE), receive, send)
        return api.left

    assert within(10, main), "the API's stream was left open"
