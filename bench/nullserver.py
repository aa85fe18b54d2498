"""A registry stub that stores nothing: the ceiling of the load generator and of wrk on this machine.

It speaks just enough of the Distribution API for every bench scenario (uploads, blob GET/HEAD,
manifests, tags, catalog, a dummy /token) but discards blob bytes and serves zeros of the recorded
size. It checks no credentials. Run in its own process (`python -m bench.nullserver PORT`) so it does
not share the bench's interpreter lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import socketserver
import sys
import uuid
from typing import ClassVar

READ_BUFFER = 1 << 20
ZEROS = memoryview(bytes(READ_BUFFER))

UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/?]*)$")
BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
# dockyard's pull tokens are ES256 JWTs of about 700 characters; /token answers one of that length.
NULL_TOKEN = "n" * 700
NULL_TOKEN_ANSWER = json.dumps({"token": NULL_TOKEN, "access_token": NULL_TOKEN, "expires_in": 300}).encode()


class NullRegistry(socketserver.StreamRequestHandler):
    rbufsize = 256 * 1024
    blob_sizes: ClassVar[dict[str, int]] = {}
    upload_sizes: ClassVar[dict[str, int]] = {}
    manifests: ClassVar[
        dict[tuple[str, str], tuple[bytes, str, str]]
    ] = {}  # (repo, ref) -> body, type, digest

    def handle(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.scratch = memoryview(bytearray(READ_BUFFER))
        while True:
            request_line = self.rfile.readline()
            if not request_line:
                return
            method, target, version = request_line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body_length = int(headers.get("content-length", "0"))
            # HTTP/1.0 clients (ab) keep the connection only if the answer says so.
            self.keep_alive_header = (
                version.startswith("HTTP/1.0") and "keep-alive" in headers.get("connection", "").lower()
            )
            self.answer(method, target, headers, body_length)

    def read_body(self, length: int, keep: bool) -> bytes:
        kept = bytearray()
        while length > 0:
            count = self.rfile.readinto(self.scratch[: min(length, READ_BUFFER)])
            if not count:
                raise ConnectionResetError
            if keep:
                kept += self.scratch[:count]
            length -= count
        return bytes(kept)

    def send(
        self, status: int, headers: dict[str, str], body: bytes = b"", length: int | None = None
    ) -> None:
        reason = {200: "OK", 201: "Created", 202: "Accepted", 404: "Not Found"}.get(status, "X")
        size = len(body) if length is None else length
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {size}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.keep_alive_header:
            lines.append("Connection: keep-alive")
        self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def send_zeros(self, size: int) -> None:
        while size > 0:
            chunk = min(size, READ_BUFFER)
            self.connection.sendall(ZEROS[:chunk])
            size -= chunk

    def answer(self, method: str, target: str, headers: dict[str, str], body_length: int) -> None:
        path, _, query = target.partition("?")
        params = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
        is_manifest_put = method == "PUT" and MANIFEST.match(path) is not None
        body = self.read_body(body_length, keep=is_manifest_put)
        if path == "/v2/":
            return self.send(200, {"Content-Type": "application/json"}, b"{}")
        if path == "/token":  # any credentials: a token as long as a real one, so requests weigh the same
            return self.send(200, {"Content-Type": "application/json"}, NULL_TOKEN_ANSWER)
        if path == "/v2/_catalog":
            repos = sorted({repo for repo, _ in self.manifests})
            return self.send(
                200, {"Content-Type": "application/json"}, json.dumps({"repositories": repos}).encode()
            )
        if match := UPLOADS.match(path):
            return self.upload(method, match["name"], match["id"], params, body_length)
        if (match := BLOB.match(path)) and match["digest"] in self.blob_sizes:
            size = self.blob_sizes[match["digest"]]
            self.send(200, {"Docker-Content-Digest": match["digest"]}, length=size)
            if method == "GET":
                self.send_zeros(size)
            return None
        if match := MANIFEST.match(path):
            return self.manifest(method, match["name"], match["ref"], headers, body)
        if match := TAGS.match(path):
            tags = sorted(ref for repo, ref in self.manifests if repo == match["name"] and ":" not in ref)
            return self.send(200, {"Content-Type": "application/json"}, json.dumps({"tags": tags}).encode())
        return self.send(404, {})

    def upload(
        self, method: str, name: str, upload_id: str, params: dict[str, str], body_length: int
    ) -> None:
        if method == "POST":
            upload_id = uuid.uuid4().hex
        size = self.upload_sizes.pop(upload_id, 0) + body_length
        if "digest" in params and method in ("POST", "PUT"):
            self.blob_sizes[params["digest"]] = size
            location = f"/v2/{name}/blobs/{params['digest']}"
            return self.send(201, {"Location": location, "Docker-Content-Digest": params["digest"]})
        self.upload_sizes[upload_id] = size
        location = f"/v2/{name}/blobs/uploads/{upload_id}"
        return self.send(202, {"Location": location, "Range": f"0-{max(size - 1, 0)}"})

    def manifest(self, method: str, name: str, ref: str, headers: dict[str, str], body: bytes) -> None:
        if method == "PUT":
            digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
            stored = (body, headers.get("content-type", ""), digest)
            self.manifests[(name, ref)] = self.manifests[(name, digest)] = stored
            return self.send(
                201, {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
            )
        if (name, ref) not in self.manifests:
            return self.send(404, {})
        content, media_type, digest = self.manifests[(name, ref)]
        answer = {"Content-Type": media_type, "Docker-Content-Digest": digest}
        if method == "HEAD":
            return self.send(200, answer, length=len(content))
        return self.send(200, answer, content)


class ThreadedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main() -> None:
    with ThreadedServer(("127.0.0.1", int(sys.argv[1])), NullRegistry) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
