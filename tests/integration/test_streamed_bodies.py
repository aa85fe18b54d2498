"""Uploads as Go clients send them (containerd, docker): the request's headers go first, the body follows
from a pipe fed while the request is in flight, with Content-Length set and a keep-alive connection
reused from the POST; several blobs at once over a server with two worker processes.

And a refusal the server can give from the headers alone (an unknown upload, a missing digest) while
such a body is still coming: the client must be able to send its body and read the refusal, not meet a
reset mid-body (containerd 1.6, refused before it wrote to its pipe, then waited on that pipe forever).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.ociclient import digest_of
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

KiB, MiB = 1024, 1024 * 1024
PIPE_PIECE = 32 * KiB  # what Go's transport copies from a pipe body at a time


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server"), {"http": {"workers": 2}})
    yield running
    running.stop()


def connect(server: RunningServer) -> http.client.HTTPConnection:
    host, port = server.host.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=60)


def exchange(
    connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def streamed_request(
    connection: http.client.HTTPConnection, method: str, path: str, data: bytes, first_byte_after: float
) -> tuple[http.client.HTTPResponse, bytes]:
    """Send the headers with Content-Length, then the body from a pipe that a thread starts filling
    `first_byte_after` seconds later, in Go's 32 KiB pieces; then read the answer. A reset while
    sending raises (BrokenPipeError, ConnectionResetError), as it fails a Go client's body write."""
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            time.sleep(first_byte_after)
            for start in range(0, len(data), PIPE_PIECE):
                pipe.write(data[start : start + PIPE_PIECE])
                pipe.flush()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        connection.putrequest(method, path)
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders()  # the headers leave before any body byte exists
        with os.fdopen(read_end, "rb") as pipe:
            while piece := pipe.read(PIPE_PIECE):
                connection.send(piece)
        response = connection.getresponse()
        return response, response.read()
    finally:
        feeder.join(timeout=10)


def push_like_go(server: RunningServer, repo: str, blob: bytes, new_connection_for_put: bool) -> str:
    """HEAD, POST, then PUT ?digest= with the body streamed; the PUT reuses the POST's connection (Go's
    keep-alive), or takes another one, which may land on the other worker."""
    digest = digest_of(blob)
    connection = connect(server)
    try:
        head, _ = exchange(connection, "HEAD", f"/v2/{repo}/blobs/{digest}")
        assert head.status == 404
        started, body = exchange(connection, "POST", f"/v2/{repo}/blobs/uploads/")
        assert started.status == 202, body
        location = started.headers["Location"]
        if new_connection_for_put:
            connection.close()
            connection = connect(server)
        done, body = streamed_request(connection, "PUT", f"{location}?digest={digest}", blob, 0.02)
        assert done.status == 201, (done.status, body)
        assert done.headers["Docker-Content-Digest"] == digest
        return digest
    finally:
        connection.close()


def test_parallel_go_style_pushes_across_two_workers_all_land(two_workers: RunningServer) -> None:
    sizes = [537, 64 * KiB + 7, 64 * KiB, MiB + 1, 3 * MiB, 200 * KiB] * 3
    blobs = [os.urandom(size) for size in sizes]
    jobs: list[Callable[[], str]] = [
        (
            lambda blob=blob, index=index: push_like_go(
                two_workers, f"go/style{index % 3}", blob, index % 2 == 1
            )
        )
        for index, blob in enumerate(blobs)
    ]
    with ThreadPoolExecutor(max_workers=6) as pool:
        digests = list(pool.map(lambda job: job(), jobs))
    for index, (blob, digest) in enumerate(zip(blobs, digests, strict=True)):
        pulled = httpx.get(f"{two_workers.url}/v2/go/style{index % 3}/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert pulled.status_code == 200 and pulled.content == blob, (index, len(blob))


@pytest.mark.parametrize(
    ("first_byte_after", "size"),
    [(0.0, 4 * MiB), (0.3, 4 * MiB), (0.0, 64 * KiB + 1)],
    ids=["at-once", "late", "small"],
)
def test_a_put_refused_from_its_headers_lets_the_body_arrive_and_answers_why(
    two_workers: RunningServer, first_byte_after: float, size: int
) -> None:
    data = os.urandom(size)
    digest = digest_of(data)
    unknown = f"/v2/go/refused/blobs/uploads/{'ab' * 16}?digest={digest}"
    connection = connect(two_workers)
    try:
        started, _ = exchange(connection, "POST", "/v2/go/refused/blobs/uploads/")
        no_digest = started.headers["Location"]
        for path, status, code in ((unknown, 404, "BLOB_UPLOAD_UNKNOWN"), (no_digest, 400, "DIGEST_INVALID")):
            # Sending every byte must work: the answer comes after the body, not as a reset mid-body.
            refused, body = streamed_request(connection, "PUT", path, data, first_byte_after)
            assert refused.status == status, body
            assert json.loads(body)["errors"][0]["code"] == code
            assert refused.headers.get("Connection") != "close"
            # The body was read to its end: the same connection serves the next request.
            again, _ = exchange(connection, "GET", "/v2/")
            assert again.status == 200
    finally:
        connection.close()


def test_a_refusal_to_a_client_waiting_for_100_continue_comes_without_asking_for_the_body(
    two_workers: RunningServer,
) -> None:
    host, port = two_workers.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"PUT /v2/go/expect/blobs/uploads/{'cd' * 16}?digest=sha256:{'0' * 64} HTTP/1.1\r\n"
            f"Host: {two_workers.host}\r\nContent-Length: {64 * MiB}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        answer = receive_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), answer[:200]  # the final answer, no "100 Continue" first
    assert b"connection: close" in head.lower()
    assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


def receive_until_closed(sock: socket.socket) -> bytes:
    chunks: list[Any] = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_gone_mid_body_is_said_in_the_log_beside_its_400(two_workers: RunningServer) -> None:
    """What issue 16 took for a refusal: ctr gave up after a PUT's headers; the access log showed a 400."""
    connection = connect(two_workers)
    started, _ = exchange(connection, "POST", "/v2/go/gone/blobs/uploads/")
    connection.putrequest("PUT", f"{started.headers['Location']}?digest=sha256:{'1' * 64}")
    connection.putheader("Content-Length", "100000")
    connection.endheaders(b"x" * 1234)
    connection.close()
    deadline = time.monotonic() + 10
    while "client disconnected after 1234 of 100000 body bytes" not in two_workers.log():
        assert time.monotonic() < deadline, two_workers.log()[-3000:]
        time.sleep(0.1)
