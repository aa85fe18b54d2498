"""The upstream client's upload of a blob against two small loopback servers: the registry (Basic
auth) and the host its upload Location names. Credentials go to the registry only, never to another
host it names; the body streams with its length and the digest."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.client import HttpRemoteRegistry
from dockyard.upstream.interfaces import Credentials

DIGEST = "sha256:" + "a" * 64


class Seen:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None, bytes]] = []  # method, path, authorization, body
        self.connections = 0
        self.cookies: list[str | None] = []  # each request's Cookie header


def serve(seen: Seen, upload_host: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            seen.connections += 1

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            authorization = self.headers.get("authorization")
            seen.requests.append((self.command, self.path, authorization, body))
            seen.cookies.append(self.headers.get("cookie"))
            if self.path.startswith("/v2/") and authorization is None:
                self._send(401, {"WWW-Authenticate": 'Basic realm="registry"'})
            elif self.command == "HEAD":
                self._send(404, {})
            elif self.command == "POST":
                self._send(202, {"Location": f"{upload_host[0]}/upload/1"})
            else:
                self._send(201, {})

        def _send(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.send_header("Set-Cookie", "session=1; Path=/")  # a load balancer's, say
            self.end_headers()

        do_HEAD = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[tuple[str, str, Seen, Seen, list[str]]]:
    registry_seen, other_seen, upload_host = Seen(), Seen(), [""]
    registry = serve(registry_seen, upload_host)
    other = serve(other_seen, upload_host)
    try:
        yield (
            f"http://127.0.0.1:{registry.server_address[1]}",
            f"http://127.0.0.1:{other.server_address[1]}",
            registry_seen,
            other_seen,
            upload_host,
        )
    finally:
        registry.shutdown()
        other.shutdown()


def client(url: str) -> HttpRemoteRegistry:
    return HttpRemoteRegistry(
        url, Credentials("basic", "user", "secret"), guard=AddressGuard(["127.0.0.0/8"])
    )


def test_an_upload_on_the_registry_gets_the_credentials(
    servers: tuple[str, str, Seen, Seen, list[str]],
) -> None:
    registry, _, seen, _, upload_host = servers
    upload_host[0] = registry
    client(registry).push_blob("team/app", DIGEST, 6, iter([b"abc", b"def"]))
    put = [request for request in seen.requests if request[0] == "PUT"]
    assert len(put) == 1 and put[0][2] is not None and put[0][2].startswith("Basic ")
    assert put[0][1] == f"/upload/1?digest={DIGEST.replace(':', '%3A')}" and put[0][3] == b"abcdef"


def test_an_upload_on_another_host_gets_no_credentials(
    servers: tuple[str, str, Seen, Seen, list[str]],
) -> None:
    registry, other, seen, other_seen, upload_host = servers
    upload_host[0] = other
    client(registry).push_blob("team/app", DIGEST, 6, iter([b"abc", b"def"]))
    assert any(request[2] for request in seen.requests)  # the registry was sent them
    assert [(method, authorization, body) for method, _, authorization, body in other_seen.requests] == [
        ("PUT", None, b"abcdef")
    ]


def test_a_client_copying_blobs_keeps_one_connection(
    servers: tuple[str, str, Seen, Seen, list[str]],
) -> None:
    # Answers without a body (a HEAD, the 202 of a POST, the 201 of a PUT) closed unread used to close
    # their connection too: a new TCP connection for every request of a copy.
    registry, _, seen, _, upload_host = servers
    upload_host[0] = registry
    remote = client(registry)
    for _ in range(5):
        assert not remote.has_blob("team/app", DIGEST)
        remote.push_blob("team/app", DIGEST, 6, iter([b"abc", b"def"]))
    assert len(seen.requests) == 16 and seen.connections == 1  # the first HEAD's 401, then 3 per copy


def test_the_client_keeps_no_cookies(servers: tuple[str, str, Seen, Seen, list[str]]) -> None:
    """Registries need none (docker and containerd keep none); httpx's jar cost 5% of a run's CPU."""
    registry, _, seen, _, upload_host = servers
    upload_host[0] = registry
    remote = client(registry)
    for _ in range(2):
        remote.push_blob("team/app", DIGEST, 6, iter([b"abc", b"def"]))
    assert len(seen.cookies) == 5 and seen.cookies == [None] * 5
