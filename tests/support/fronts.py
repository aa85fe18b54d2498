"""A counting front for a real registry: a threaded loopback HTTP server that forwards every request to
the registry behind it and keeps a count of what it forwarded, and that can be told to misbehave: answer
a status of its own (503, 429), cut blob bodies off half-way, corrupt them, or slow them down. Tests of
the pull-through cache count upstream requests with it."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support.timeouts import HTTP_TIMEOUT

PACE_PIECE = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


@dataclass
class Front:
    url: str
    target: str
    status: int | None = None  # answer this to every request instead of forwarding (503, 429)
    cut_blobs: bool = False  # send half of each blob body, then close the connection
    blob_delay: float = 0.0  # seconds to sleep before sending each blob body
    manifest_delay: float = 0.0  # seconds to sleep before sending each manifest body (GET)
    corrupt_blobs: bool = False  # flip the last byte of each blob body (its digest no longer matches)
    blob_pace: float = 0.0  # seconds between pieces (PACE_PIECE bytes) of each blob body: a slow link
    # Forward the client's Host header (a reverse proxy's usual setting): the registry then names the
    # front in the absolute URLs it answers (upload Locations), not its own address.
    keep_host: bool = False
    # Cut one blob body (GET) off after this many bytes, then forward again as usual (a flapping link).
    cut_blob_once_after: int | None = None
    # Cut one upload body (PUT, PATCH) off after this many bytes: the registry gets them and a dropped
    # connection, the client no answer.
    cut_upload_once_after: int | None = None
    blob_bytes: int = 0  # blob body bytes sent to clients (GET)
    upload_bytes: int = 0  # upload body bytes forwarded to the registry (PUT, PATCH)
    # (method, kind): requests forwarded and answered other than 401 (challenges are no fetches)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str, kind: str) -> int:
        with self.lock:
            return self.counts[(method, kind)]

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
        self.status, self.cut_blobs, self.blob_delay, self.corrupt_blobs = None, False, 0.0, False
        self.manifest_delay = self.blob_pace = 0.0
        self.cut_blob_once_after = self.cut_upload_once_after = None
        self.blob_bytes = self.upload_bytes = 0


def _kind(path: str) -> str:
    if "/blobs/uploads" in path:
        return "upload"
    if "/blobs/" in path:
        return "blob"
    if "/manifests/" in path:
        return "manifest"
    return "other"


def _handler(front: Front) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self) -> None:
            kind = _kind(self.path)
            if front.status is not None:
                body = b'{"errors":[{"code":"UNAVAILABLE","message":"front says no"}]}'
                self.send_response(front.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if front.keep_host and self.headers.get("host"):
                headers["Host"] = self.headers["host"]
            if body and kind == "upload" and self.command in ("PUT", "PATCH"):
                with front.lock:
                    cut = front.cut_upload_once_after
                    if cut is not None and cut < len(body):  # a body long enough to cut
                        front.cut_upload_once_after = None
                    else:
                        cut = None
                if cut is not None:
                    self._forward_cut_upload(headers, body, cut)
                    return
                with front.lock:
                    front.upload_bytes += len(body)
            with httpx.Client(timeout=HTTP_TIMEOUT) as client:
                request = client.build_request(
                    self.command, front.target + self.path, headers=headers, content=body
                )
                response = client.send(request, stream=True)
                if response.status_code != 401:  # the challenge handshake is not a fetch
                    with front.lock:
                        front.counts[(self.command, kind)] += 1
                try:
                    self.send_response(response.status_code)
                    for key, value in response.headers.items():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    data = response.read()
                finally:
                    response.close()
            if kind == "manifest" and self.command == "GET" and front.manifest_delay:
                time.sleep(front.manifest_delay)
            if kind == "blob" and self.command == "GET" and response.status_code in (200, 206):
                if front.blob_delay:
                    time.sleep(front.blob_delay)
                if front.corrupt_blobs and data:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                with front.lock:
                    cut = front.cut_blob_once_after
                    if cut is not None and cut < len(data):  # a blob long enough to cut
                        front.cut_blob_once_after = None
                    else:
                        cut = None
                    front.blob_bytes += len(data) if cut is None else cut
                if cut is not None:
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if front.cut_blobs:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if front.blob_pace:
                    try:
                        for start in range(0, len(data), PACE_PIECE):
                            self.wfile.write(data[start : start + PACE_PIECE])
                            self.wfile.flush()
                            time.sleep(front.blob_pace)
                    except OSError:  # the client went away
                        self.close_connection = True
                    return
            self.wfile.write(data)

        def _forward_cut_upload(self, headers: dict[str, str], body: bytes, cut: int) -> None:
            """Send the registry the first `cut` bytes of the body, then drop both connections."""

            def partial() -> Iterator[bytes]:
                yield body[:cut]
                time.sleep(0.2)  # let the registry take them in before the connection drops
                raise ConnectionResetError("the front cut the upload off")

            with front.lock:
                front.upload_bytes += cut
            try:
                with httpx.Client(timeout=HTTP_TIMEOUT) as client:
                    client.request(self.command, front.target + self.path, headers=headers, content=partial())
            except (httpx.HTTPError, ConnectionResetError):
                pass
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up (a cut-off test) are expected


@contextmanager
def running_front(target: str) -> Iterator[Front]:
    front = Front("", target)
    server = _QuietServer(("127.0.0.1", 0), _handler(front))
    front.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield front
    finally:
        server.shutdown()
        server.server_close()
