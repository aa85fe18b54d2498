"""The pull operation that follows a registry's 307 to the object store, as clients do."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.engines import ENGINES
from bench.operations import pull_blob_following
from bench.wire import Response, split_url

DIGEST = "sha256:" + "a" * 64
PRESIGNED = "http://127.0.0.1:8333/bucket/blobs/data?X-Amz-Signature=abc&X-Amz-Expires=1200"


def test_a_redirect_is_followed_to_the_store_without_registry_headers() -> None:
    operation = pull_blob_following("bench/app", DIGEST, 5)
    first = next(operation)
    assert (first.method, first.target, first.origin) == ("GET", f"/v2/bench/app/blobs/{DIGEST}", None)
    assert 307 in first.expect
    second = operation.send(Response(307, {"location": PRESIGNED}, 0, b""))
    assert second.origin == ("127.0.0.1", 8333)
    assert second.target == "/bucket/blobs/data?X-Amz-Signature=abc&X-Amz-Expires=1200"
    assert second.headers == {} and second.expect == (200,)
    with pytest.raises(StopIteration) as done:
        operation.send(Response(200, {}, 5, b"12345"))
    assert done.value.value == 5


def test_a_direct_answer_needs_no_second_request() -> None:
    operation = pull_blob_following("bench/app", DIGEST, 5)
    next(operation)
    with pytest.raises(StopIteration):
        operation.send(Response(200, {}, 5, b"12345"))


def test_a_short_body_is_an_error() -> None:
    operation = pull_blob_following("bench/app", DIGEST, 5)
    next(operation)
    with pytest.raises(ValueError, match="expected 5"):
        operation.send(Response(200, {}, 4, b"1234"))


def test_only_plain_http_redirects_can_be_followed() -> None:
    assert split_url("http://localhost/x") == (("localhost", 80), "/x")
    with pytest.raises(ValueError, match="plain http"):
        split_url("https://s3.example/x")


class _Store(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"12345"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Registry(_Store):
    store_port = 0

    def do_GET(self) -> None:
        self.send_response(307)
        self.send_header("Location", f"http://127.0.0.1:{self.store_port}/bucket/blob?X-Amz-Signature=x")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_both_engines_follow_the_redirect_to_another_server(engine: str) -> None:
    store = ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    handler = type("Registry", (_Registry,), {"store_port": store.server_address[1]})
    registry = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (store, registry)]
    for thread in threads:
        thread.start()
    try:
        port = registry.server_address[1]
        result = ENGINES[engine]("127.0.0.1", port, lambda: pull_blob_following("r", DIGEST, 5), 2, 0.3)
    finally:
        for server in (store, registry):
            server.shutdown()
            server.server_close()
    assert result.errors == 0, result.error_samples
    assert result.operations > 0
    assert result.payload_bytes == 5 * result.operations
