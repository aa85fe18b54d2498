"""Graceful drain on a real `dockyard serve` with two workers: on SIGTERM /readyz answers 503 at once
while an upload that was already streaming completes; then the process exits 0 by itself. A transfer
that outlasts `http.drain_timeout` does not hold the node up for good."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ociclient import OCIClient
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

CHUNK = b"x" * 64 * 1024


class SlowUpload:
    """A monolithic blob PUT whose body trickles in over `seconds`, run in a thread; with `hold`, its
    first chunk goes out and the rest waits until `hold` is set."""

    def __init__(
        self, server: RunningServer, chunks: int, seconds: float, hold: threading.Event | None = None
    ) -> None:
        self.server = server
        self.chunks = chunks
        self.pause = seconds / chunks
        self.hold = hold
        self.sent = threading.Event()  # the first chunk went out: the request is in flight
        self.answer: httpx.Response | BaseException | None = None
        self.digest = "sha256:" + hashlib.sha256(CHUNK * chunks).hexdigest()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _body(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            yield CHUNK
            self.sent.set()
            if self.hold is not None:
                assert self.hold.wait(30), "the test never let the upload go on"
            time.sleep(self.pause)

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.server.url, timeout=HTTP_TIMEOUT) as http:
                location = OCIClient(http).upload_location("drain/app")
                self.answer = http.put(
                    location,
                    params={"digest": self.digest},
                    content=self._body(),
                    headers={"Content-Type": "application/octet-stream"},
                )
        except BaseException as exc:  # the test reads it
            self.answer = exc

    def start(self) -> None:
        self.thread.start()
        assert self.sent.wait(10)
        time.sleep(0.3)  # the server has the request


def readyz(server: RunningServer) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=HTTP_TIMEOUT)


def wait_exit(server: RunningServer, timeout: float) -> int | None:
    try:
        return server.process.wait(timeout=timeout)
    except Exception:
        return None


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def start(workdir: Path, config: dict[str, Any]) -> RunningServer:
    return start_server(workdir, {"http": {"workers": 2, **config}})


def test_sigterm_fails_readiness_and_finishes_the_upload_in_flight(workdir: Path) -> None:
    server = start(workdir, {"drain_timeout": "60s"})
    try:
        assert readyz(server).status_code == 200
        go_on = threading.Event()
        upload = SlowUpload(server, chunks=40, seconds=0.4, hold=go_on)
        upload.start()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        answer = readyz(server)
        assert answer.status_code == 503
        assert answer.json() == {"status": "draining"}
        time.sleep(1.0)
        assert server.process.poll() is None  # still serving the upload, which the drain waits for
        go_on.set()
        upload.thread.join(30)
        assert isinstance(upload.answer, httpx.Response), upload.answer
        assert upload.answer.status_code == 201, upload.answer.text
        assert wait_exit(server, 20) == 0, server.log()[-3000:]
        assert "drained in" in server.log()
    finally:
        server.stop()
    # The blob is there: the upload was really committed, not cut and reported.
    again = start_server(workdir, {"http": {"workers": 1}})
    try:
        head = httpx.head(f"{again.url}/v2/drain/app/blobs/{upload.digest}", timeout=HTTP_TIMEOUT)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(CHUNK) * 40)
    finally:
        again.stop()


def test_an_idle_node_stops_at_once(workdir: Path) -> None:
    server = start(workdir, {"drain_timeout": "60s"})
    try:
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # Far sooner than the 60 s drain timeout: nothing is in flight, so nothing is waited for (about
        # 1 s here; up to ~12 s on a loaded CI machine, where a worker still starting must first stop).
        assert wait_exit(server, 40) == 0, server.log()[-3000:]
        assert time.monotonic() - signalled < 30
    finally:
        server.stop()


def test_the_drain_timeout_bounds_the_wait(workdir: Path) -> None:
    server = start(workdir, {"drain_timeout": "1s"})
    try:
        upload = SlowUpload(server, chunks=300, seconds=60.0)
        upload.start()
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = wait_exit(server, 30)
        assert code == 0, f"exit code {code}, 30 s after SIGTERM with a 1 s drain timeout"
        assert time.monotonic() - signalled < 25
        assert "drain timeout" in server.log()
    finally:
        server.stop()
