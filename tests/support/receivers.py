"""A webhook listener for tests: a threaded http.server on a loopback port that keeps every request
it gets (headers and JSON body) and answers as told: 200, a failure status for the first N requests,
or not at all for a while (a listener that hangs)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, list[str]]
    body: dict[str, Any]
    status: int  # what the receiver answered (0: it hung up without answering)
    raw: bytes = b""  # the body as it came (what a signature covers)


@dataclass
class Receiver:
    url: str
    fail_first: int = 0  # answer `fail_status` to this many requests, then 200
    fail_status: int = 500
    hang_seconds: float = 0.0  # sleep this long before answering each request
    redirect_to: str | None = None  # answer 302 with this Location instead
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_events(self) -> list[dict[str, Any]]:
        """The events of every request answered 2xx, in the order they came."""
        with self.lock:
            return [e for r in self.requests if 200 <= r.status < 300 for e in r.body["events"]]

    def accepted_bodies(self) -> list[Received]:
        """Every request answered 2xx (webhook policies send one event per request)."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for_bodies(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepted = self.accepted_bodies()
            if predicate(accepted):
                return accepted
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not get what was expected; it got {self.requests}")

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.accepted_events()):
                return
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not get what was expected; it got {self.accepted_events()}")


@contextmanager
def running_receiver(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(url="", **options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            body = json.loads(raw or b"{}")
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            with receiver.lock:
                failing = receiver.fail_first > 0
                if failing:
                    receiver.fail_first -= 1
            if receiver.hang_seconds:
                time.sleep(receiver.hang_seconds)
            status = receiver.fail_status if failing else (302 if receiver.redirect_to else 200)
            with receiver.lock:
                receiver.requests.append(Received(headers, body, status, raw))
            try:
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the registry gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
