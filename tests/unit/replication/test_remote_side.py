"""The push side's requests to a registry, counted on a small loopback registry: a blob the destination
lacks is asked about with a HEAD until the registry has shown it mounts (asked once, with a mount of a
blob just copied from its repository into itself), then with a mount POST whose upload takes the blob.
A registry that does not mount keeps the HEAD, and its uploads started for the question are cancelled."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.replication.engine import MemoryPendingUploads
from dockyard.replication.interfaces import BlobSource
from dockyard.replication.sides import RemoteSide
from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.client import HttpRemoteRegistry

pytestmark = pytest.mark.db_independent


class Registry:
    def __init__(self, mounts: bool) -> None:
        self.mounts = mounts
        self.blobs: dict[tuple[str, str], bytes] = {}  # (repository, digest) -> bytes
        self.uploads: dict[str, str] = {}  # open upload id -> repository
        self.requests: list[str] = []  # "HEAD blob", "POST mount 201", "PUT upload", ...
        self._ids = count(1)
        self.lock = threading.Lock()


def serve(registry: Registry) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            with registry.lock:
                status, headers, what = self._handle(url.path, query, body)
                registry.requests.append(f"{self.command} {what} {status}")
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _handle(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, str], str]:
            if "/blobs/uploads/" not in path:  # HEAD /v2/<repository>/blobs/<digest>
                repository, _, digest = path.removeprefix("/v2/").rpartition("/blobs/")
                return (200 if (repository, digest) in registry.blobs else 404), {}, "blob"
            repository, _, upload = path.removeprefix("/v2/").partition("/blobs/uploads/")
            if self.command == "POST":
                mount, source = query.get("mount"), query.get("from")
                if registry.mounts and mount and (str(source), mount) in registry.blobs:
                    registry.blobs[(repository, mount)] = registry.blobs[(str(source), mount)]
                    return 201, {}, "mount"
                upload = str(next(registry._ids))
                registry.uploads[upload] = repository
                where = f"/v2/{repository}/blobs/uploads/{upload}"
                return 202, {"Location": where}, "mount" if mount else "upload"
            if self.command == "DELETE":
                registry.uploads.pop(upload, None)
                return 204, {}, "upload"
            assert registry.uploads.pop(upload) == repository  # PUT ?digest=
            assert query["digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
            registry.blobs[(repository, query["digest"])] = body
            return 201, {}, "upload"

        do_HEAD = do_POST = do_PUT = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(params=[True, False], ids=["mounts", "no-mounts"])
def registry(request: pytest.FixtureRequest) -> Iterator[tuple[Registry, RemoteSide]]:
    registry = Registry(mounts=request.param)
    server = serve(registry)
    remote = HttpRemoteRegistry(
        f"http://127.0.0.1:{server.server_address[1]}", guard=AddressGuard(["127.0.0.0/8"])
    )
    try:
        yield registry, RemoteSide(remote)
    finally:
        remote.close()
        server.shutdown()


def copy(side: RemoteSide, repository: str, data: bytes) -> str:
    """What the engine does for one blob: ask, then send it when the destination lacks it."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if not side.has_blob(repository, digest):
        opened = lambda offset: BlobSource(0, len(data), iter([data]), lambda: None)  # noqa: E731
        side.push_blob(repository, digest, len(data), opened, MemoryPendingUploads())
    return digest


def test_a_mounting_registry_is_asked_with_the_upload_that_takes_the_blob(
    registry: tuple[Registry, RemoteSide],
) -> None:
    fake, side = registry
    blobs = [f"layer {n}".encode() * 1000 for n in range(5)]
    digests = [copy(side, "team/app", data) for data in blobs]
    assert all(fake.blobs[("team/app", digest)] == data for digest, data in zip(digests, blobs, strict=True))
    first = ["HEAD blob 404", "POST upload 202", "PUT upload 201"]
    if fake.mounts:  # one question, then two requests per blob where there were three
        assert fake.requests == [*first, "POST mount 201"] + ["POST mount 202", "PUT upload 201"] * 4
    else:  # the question's upload is cancelled, and the blobs go as before
        assert fake.requests == [*first, "POST mount 202", "DELETE upload 204", *first * 4]
    # A blob it holds is one request either way, and no upload is left open.
    before = len(fake.requests)
    copy(side, "team/app", blobs[0])
    assert fake.requests[before:] == (["POST mount 201"] if fake.mounts else ["HEAD blob 200"])
    assert not fake.uploads


def test_an_upload_no_push_took_is_cancelled_when_the_side_closes(
    registry: tuple[Registry, RemoteSide],
) -> None:
    fake, side = registry
    copy(side, "team/app", b"first")
    digest = "sha256:" + hashlib.sha256(b"never sent").hexdigest()
    assert not side.has_blob("team/app", digest)  # a run cancelled before the blob went, say
    side.close()
    assert not fake.uploads
