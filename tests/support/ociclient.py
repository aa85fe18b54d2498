"""Small OCI Distribution helpers on top of httpx, for the HTTP-level tests.

Deliberately independent of `dockyard.content`: the tests check the server against the spec, so the
constants and the JSON documents are written out here from the spec, not borrowed from the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import select
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.timeouts import HTTP_TIMEOUT

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)

EMPTY_JSON = b"{}"
# The error codes the distribution spec defines (code-1 .. code-15).
SPEC_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


# --- diagnostics and assertions -------------------------------------------------------------
def bearer_client(
    url: str,
    credentials: tuple[str, str],
    repos: tuple[str, ...],
    timeout: float | httpx.Timeout = HTTP_TIMEOUT,
) -> httpx.Client:
    """A /v2 client holding a token for pull, push and delete on `repos`, as docker would."""
    scopes = [("scope", f"repository:{repo}:pull,push,delete") for repo in repos]
    # The client's timeout, not httpx's 5 s: behind HAProxy a token request may first meet a node just
    # killed, which costs HAProxy's connect timeout before it tries another.
    answer = httpx.get(
        f"{url}/token", params=[("service", "dockyard"), *scopes], auth=credentials, timeout=timeout
    )
    assert answer.status_code == 200, describe(answer)
    headers = {"Authorization": f"Bearer {answer.json()['token']}"}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout)


def describe(response: httpx.Response) -> str:
    """The request and response in a few lines, for assertion messages (and bug reports)."""
    request = response.request
    sent = {k: v for k, v in request.headers.items() if k.lower() not in {"user-agent", "accept-encoding"}}
    body = b"" if request.method == "HEAD" else response.content
    return (
        f"\n> {request.method} {request.url.raw_path.decode()} {sent}"
        f"\n< {response.status_code} {dict(response.headers)}\n< {body[:600]!r}"
    )


def error_codes(response: httpx.Response) -> list[str]:
    """The codes of a spec error body, after checking its shape and content type."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    assert content_type == "application/json", f"error body is not JSON{describe(response)}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"errors"}, f"not an error envelope{describe(response)}"
    errors = body["errors"]
    assert isinstance(errors, list) and errors, f"empty errors list{describe(response)}"
    for error in errors:
        assert isinstance(error, dict) and set(error) <= {"code", "message", "detail"}, describe(response)
        code = error.get("code")
        assert isinstance(code, str) and re.fullmatch(r"[A-Z_]+", code), describe(response)
        assert error["code"] in SPEC_ERROR_CODES, f"code not in the spec{describe(response)}"
        assert isinstance(error.get("message", ""), str), describe(response)
    return [error["code"] for error in errors]


def assert_error(response: httpx.Response, status: int | tuple[int, ...], *codes: str) -> None:
    """Status is (one of) `status`, the body is the spec's error envelope, and its first code is in codes.

    With no codes, any spec code is accepted (the spec names the status but not the code)."""
    allowed = status if isinstance(status, tuple) else (status,)
    assert response.status_code in allowed, f"expected {allowed}{describe(response)}"
    if response.request.method == "HEAD":
        return
    found = error_codes(response)
    if codes:
        assert found[0] in codes, f"expected code in {codes}, got {found}{describe(response)}"


def parse_link_next(link: str) -> str:
    """The target of an RFC 5988 `Link: <url>; rel="next"` header."""
    match = re.fullmatch(r'\s*<([^>]+)>\s*;\s*rel="?next"?\s*', link)
    assert match, f"malformed Link header {link!r}"
    return match.group(1)


def link_query(link: str) -> tuple[str, dict[str, list[str]]]:
    target = urlsplit(parse_link_next(link))
    return target.path, parse_qs(target.query)


# --- documents ------------------------------------------------------------------------------
def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}


def empty_descriptor() -> dict[str, Any]:
    """The image spec's empty descriptor: the two bytes `{}`, inlined as data."""
    return descriptor(OCI_EMPTY, EMPTY_JSON, data=base64.b64encode(EMPTY_JSON).decode())


def image_manifest(
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    *,
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config,
        "layers": layers,
    }
    if artifact_type:
        document["artifactType"] = artifact_type
    if subject:
        document["subject"] = subject
    if annotations:
        document["annotations"] = annotations
    return json.dumps(document, indent=2).encode()  # indented: the registry must keep bytes as sent


def index_manifest(
    manifests: list[dict[str, Any]],
    *,
    media_type: str = OCI_INDEX,
    artifact_type: str | None = None,
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    if artifact_type:
        document["artifactType"] = artifact_type
    if subject:
        document["subject"] = subject
    if annotations:
        document["annotations"] = annotations
    return json.dumps(document).encode()


@dataclass(frozen=True)
class PushedManifest:
    body: bytes
    digest: str
    media_type: str

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body), **extra}


# --- the client -----------------------------------------------------------------------------
class OCIClient:
    """Thin wrappers for the spec's requests; each returns the raw response unless it says otherwise."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def url(self, location: str) -> httpx.URL:
        """Resolve a Location header (absolute or relative) against the registry."""
        return self.http.base_url.join(location)

    # blobs
    def start_upload(self, repo: str, **params: str) -> httpx.Response:
        return self.http.post(f"/v2/{repo}/blobs/uploads/", params=params, headers={"Content-Length": "0"})

    def upload_location(self, repo: str) -> str:
        response = self.start_upload(repo)
        assert response.status_code == 202, describe(response)
        return response.headers["Location"]

    def patch_chunk(self, location: str, data: bytes, start: int | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/octet-stream"}
        if start is not None:
            headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
        return self.http.patch(self.url(location), content=data, headers=headers)

    def finish_upload(self, location: str, digest: str, data: bytes = b"") -> httpx.Response:
        url = self.url(location).copy_merge_params({"digest": digest})
        return self.http.put(url, content=data, headers={"Content-Type": "application/octet-stream"})

    def push_blob(self, repo: str, data: bytes, algorithm: str = "sha256") -> str:
        """POST then PUT (what most clients do); returns the digest."""
        digest = digest_of(data, algorithm)
        response = self.finish_upload(self.upload_location(repo), digest, data)
        assert response.status_code == 201, describe(response)
        return digest

    def head_blob(self, repo: str, digest: str) -> httpx.Response:
        return self.http.head(f"/v2/{repo}/blobs/{digest}")

    # manifests
    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> httpx.Response:
        headers = {"Content-Type": media_type}
        return self.http.put(f"/v2/{repo}/manifests/{reference}", content=body, headers=headers)

    def get_manifest(
        self, repo: str, reference: str, accept: str | None = None, method: str = "GET"
    ) -> httpx.Response:
        accept = accept or ", ".join(ALL_MANIFEST_TYPES)
        return self.http.request(method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> PushedManifest:
        response = self.put_manifest(repo, reference, body, media_type)
        assert response.status_code == 201, describe(response)
        return PushedManifest(body, digest_of(body), media_type)

    def push_image(
        self, repo: str, tag: str | None = None, *, seed: str = "", **manifest_args: Any
    ) -> PushedManifest:
        """A small OCI image (config + one layer) with its blobs; pushed by tag, or by digest if no tag."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed or repo}).encode()
        layer = f"layer of {repo} {tag} {seed}".encode()
        self.push_blob(repo, config)
        self.push_blob(repo, layer)
        body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)], **manifest_args)
        return self.push_manifest(repo, tag or digest_of(body), body, OCI_MANIFEST)

    # discovery
    def catalog(self) -> list[str]:
        """Every repository, following the Link headers."""
        names: list[str] = []
        url = "/v2/_catalog?n=100"
        while url:
            response = self.http.get(url)
            assert response.status_code == 200, describe(response)
            names.extend(response.json()["repositories"])
            link = response.headers.get("Link")
            url = parse_link_next(link) if link else ""
        return names

    def tags(self, repo: str) -> list[str] | None:
        """The tags of repo, or None when the repository is unknown (404)."""
        response = self.http.get(f"/v2/{repo}/tags/list")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, describe(response)
        return list(response.json()["tags"] or [])


# --- raw HTTP, for what httpx will not send (dot segments, lying Content-Length) ------------
@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    host: str,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    content_length: int | None = None,
    hang_up: bool = True,
    timeout: float = 10.0,
) -> RawResponse | None:
    """Send one HTTP/1.1 request byte for byte and read the answer.

    `content_length` larger than the body simulates a client that dies mid-upload: the body is sent,
    the write side is shut (unless `hang_up` is false: then the client just stalls), and None is
    returned when the server answers nothing before `timeout` (it may not).
    """
    address, port = host.rsplit(":", 1)
    declared = len(body) if content_length is None else content_length
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}"]
    lines.append("Connection: close")
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection((address, int(port)), timeout=timeout) as sock:
        sock.sendall(head + body)
        if declared > len(body) and hang_up:
            sock.shutdown(socket.SHUT_WR)
        return _read_response(sock)


def raw_chunked_request(
    host: str,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    *,
    piece: int = 65536,
    timeout: float = 10.0,
) -> RawResponse | None:
    """Send body with chunked transfer encoding, stopping as soon as the server answers early
    (a registry may refuse an oversized body before reading it all, then close the connection)."""
    address, port = host.rsplit(":", 1)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
    lines.append("Connection: close")
    lines += [f"{key}: {value}" for key, value in headers.items()]
    with socket.create_connection((address, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            for start in range(0, len(body), piece):
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer is already there
                part = body[start : start + piece]
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(sock)


def _read_response(sock: socket.socket) -> RawResponse | None:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    raw = b"".join(chunks)
    if not raw:
        return None
    head_bytes, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, rest)


def raw_error_codes(response: RawResponse) -> list[str]:
    assert response.headers.get("content-type", "").split(";")[0] == "application/json", response
    body = response.body
    if response.headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    document = json.loads(body)
    codes = [error["code"] for error in document["errors"]]
    assert codes and all(code in SPEC_ERROR_CODES for code in codes), response
    return codes


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def assert_serves_bit_for_bit(url: str, pushed: dict[tuple[str, str], bytes]) -> OCIClient:
    """Every manifest by its reference (exact bytes and digest header), and every blob it names, hashes
    right. Returns a client on the same server for the caller's own listing checks (close it)."""
    http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT)
    oci = OCIClient(http)
    for (repo, reference), body in pushed.items():
        response = oci.get_manifest(repo, reference)
        assert response.status_code == 200, (repo, reference, response.text)
        assert response.content == body
        assert response.headers["Docker-Content-Digest"] == digest_of(body)
        document = json.loads(body)
        for blob in [document.get("config"), *document.get("layers", [])]:
            if blob:
                got = http.get(f"/v2/{repo}/blobs/{blob['digest']}")
                assert got.status_code == 200
                assert digest_of(got.content) == blob["digest"]
    return oci
