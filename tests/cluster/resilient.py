"""A registry client that retries the way real ones do, and records every failure it saw.

What is *retryable* (what containerd, docker and skopeo retry, or restart a layer's upload on):
- the connection failed: refused, reset, closed before or during the response (a node died, HAProxy
  cut the request, a listener was not there yet);
- a 5xx answer: 502/503/504 from HAProxy (no node up, a node died mid-request), 500/503 from a node
  whose database is away;
- on an upload session that a previous request left in doubt (a retryable failure on it), the
  server saying the session is gone or unusable (404 BLOB_UPLOAD_UNKNOWN, 400/416
  BLOB_UPLOAD_INVALID): the client starts that blob's upload again, as docker and containerd do.

Anything else is *fatal* and recorded as such: a 4xx on a request nothing went wrong with before
(DIGEST_INVALID, MANIFEST_BLOB_UNKNOWN, a manifest or tag that was pushed but is not there), or bytes
that do not hash to their digest. The tests assert there were none.

Chunked uploads resume the way the spec allows: after a PATCH failed, GET the session for the offset
it reached (any node can answer) and continue from there, so a session started on one node is
continued on another.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
SESSION_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Retryable(Exception):
    """A failure a real client retries; the message names it (e.g. `PATCH 502`)."""


class Fatal(AssertionError):
    """A failure no client can retry its way out of: the registry did something wrong."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def describe(response: httpx.Response) -> str:
    request = response.request
    return f"{request.method} {request.url.path} -> {response.status_code} {response.text[:300]}"


@dataclass
class Journal:
    """Every retryable failure (by kind, with when it happened) and every fatal one, from all threads."""

    retried: Counter[str] = field(default_factory=Counter)
    retried_at: list[float] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry(self, reason: str) -> None:
        with self._lock:
            self.retried[reason] += 1
            self.retried_at.append(time.monotonic())

    def fail(self, reason: str) -> None:
        with self._lock:
            self.fatal.append(reason)


@dataclass(frozen=True)
class Image:
    repo: str
    tag: str
    manifest: bytes
    blobs: dict[str, bytes]  # digest -> bytes (config and layers)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def make_image(repo: str, tag: str, layers: list[bytes]) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": f"{repo}:{tag}"}).encode()
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(layer),
                    "size": len(layer)} for layer in layers],
    }  # fmt: skip
    blobs = {digest_of(blob): blob for blob in (config, *layers)}
    return Image(repo, tag, json.dumps(document, indent=1).encode(), blobs)


class ResilientClient:
    def __init__(self, http: httpx.Client, journal: Journal, chunk: int, deadline: float = 120.0) -> None:
        self.http = http
        self.journal = journal
        self.chunk = chunk
        self.deadline = deadline  # seconds one operation may keep retrying

    # --- one request, classified --------------------------------------------------------------
    def send(self, method: str, url: str | httpx.URL, **kwargs: object) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise Retryable(f"{method} {type(exc).__name__}") from exc
        if response.status_code in RETRYABLE_STATUS:
            raise Retryable(f"{method} {response.status_code}")
        return response

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run operation until it succeeds (backing off), for at most `deadline` seconds."""
        give_up = time.monotonic() + self.deadline
        pause = 0.1
        while True:
            try:
                return operation()
            except Retryable as exc:
                self.journal.retry(str(exc))
                if time.monotonic() > give_up:
                    raise Fatal(f"still failing after {self.deadline}s: {exc}") from exc
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def fatal(self, message: str) -> Fatal:
        self.journal.fail(message)
        return Fatal(message)

    # --- push ---------------------------------------------------------------------------------
    def push_image(self, image: Image) -> None:
        for digest, data in image.blobs.items():
            self.retrying(lambda digest=digest, data=data: self._push_blob_once(image.repo, digest, data))
        self.retrying(lambda: self._put_manifest_once(image))

    def _put_manifest_once(self, image: Image) -> None:
        headers = {"Content-Type": OCI_MANIFEST}
        response = self.send("PUT", f"/v2/{image.repo}/manifests/{image.tag}", content=image.manifest,
                             headers=headers)  # fmt: skip
        if response.status_code != 201 or response.headers.get("Docker-Content-Digest") != image.digest:
            raise self.fatal(f"manifest push: {describe(response)}")

    def _push_blob_once(self, repo: str, digest: str, data: bytes) -> None:
        """HEAD (done already?), POST, PATCH chunk by chunk (resuming after a failed one), PUT."""
        if self.send("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200:
            return
        response = self.send("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        if response.status_code != 202:
            raise self.fatal(f"upload start: {describe(response)}")
        location, offset, in_doubt = response.headers["Location"], 0, False
        while offset < len(data):
            piece = data[offset : offset + self.chunk]
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"{offset}-{offset + len(piece) - 1}"}  # fmt: skip
            try:
                response = self.send("PATCH", location, content=piece, headers=headers)
            except Retryable as exc:
                self.journal.retry(f"{exc} (resumed)")
                location, offset = self._resume(repo, location)
                in_doubt = True
                continue
            if response.status_code != 202:
                raise self._session_failure(response, in_doubt, "PATCH")
            location, offset = response.headers["Location"], offset + len(piece)
        response = self.send("PUT", self.http.base_url.join(location).copy_merge_params({"digest": digest}))
        if response.status_code != 201:
            raise self._session_failure(response, in_doubt, "PUT")

    def _resume(self, repo: str, location: str) -> tuple[str, int]:
        """Where the upload stands, from whichever node answers: (its location, the next offset)."""
        response = self.send("GET", location)
        if response.status_code == 404 and error_code(response) == "BLOB_UPLOAD_UNKNOWN":
            raise Retryable("GET upload 404 BLOB_UPLOAD_UNKNOWN after a failure: start again")
        if response.status_code != 204:
            raise self.fatal(f"upload status: {describe(response)}")
        # `Range: 0-0` is also what an empty session answers; chunks here are never one byte.
        end = int(response.headers["Range"].rsplit("-", 1)[1])
        return response.headers["Location"], end + 1 if end else 0

    def _session_failure(self, response: httpx.Response, in_doubt: bool, what: str) -> Exception:
        code = error_code(response)
        if in_doubt and response.status_code in (400, 404, 416) and code in SESSION_CODES:
            return Retryable(f"{what} {response.status_code} {code} after a failure: start again")
        return self.fatal(f"upload {what}: {describe(response)}")

    # --- pull ---------------------------------------------------------------------------------
    def pull_and_verify(self, image: Image) -> None:
        """The manifest by tag (exact bytes) and every blob it names, hashing right."""
        self.retrying(lambda: self._pull_once(image))

    def _pull_once(self, image: Image) -> None:
        response = self.send(
            "GET", f"/v2/{image.repo}/manifests/{image.tag}", headers={"Accept": OCI_MANIFEST}
        )
        if response.status_code != 200 or response.content != image.manifest:
            raise self.fatal(f"manifest of {image.repo}:{image.tag}: {describe(response)}")
        for digest in image.blobs:
            try:
                blob = self.http.get(f"/v2/{image.repo}/blobs/{digest}")
            except httpx.TransportError as exc:  # cut mid-body included
                raise Retryable(f"GET blob {type(exc).__name__}") from exc
            if blob.status_code in RETRYABLE_STATUS:
                raise Retryable(f"GET blob {blob.status_code}")
            if blob.status_code != 200 or digest_of(blob.content) != digest:
                raise self.fatal(
                    f"blob {digest} of {image.repo}: {blob.status_code}, {len(blob.content)} bytes"
                )
