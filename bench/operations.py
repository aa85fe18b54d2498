"""The push and pull operations, as clients (docker, containerd, skopeo) perform them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from bench.wire import Buffer, Operation, Request, path_of, split_url, with_query

SUFFIX_BYTES = 32
OCTET_STREAM = {"Content-Type": "application/octet-stream"}


@dataclass(frozen=True)
class Blob:
    parts: tuple[Buffer, ...]  # the content, in pieces that are sent one after another
    digest: str

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)

    def slice(self, start: int, end: int) -> tuple[Buffer, ...]:
        """The bytes [start, end) as views into the parts, without copying."""
        pieces: list[Buffer] = []
        offset = 0
        for part in self.parts:
            lo, hi = max(start, offset), min(end, offset + len(part))
            if lo < hi:
                pieces.append(memoryview(part)[lo - offset : hi - offset])
            offset += len(part)
        return tuple(pieces)


class UniqueBlobs:
    """Blobs of one size, each with different content, made cheaply.

    Every blob is one shared random body plus its own random 32-byte suffix: the digests all differ, so
    the registry must receive, hash and store every byte, while the bench hashes the shared body once.
    """

    def __init__(self, size: int) -> None:
        if size <= SUFFIX_BYTES:
            raise ValueError(f"blob size must exceed {SUFFIX_BYTES} bytes")
        self.body = memoryview(os.urandom(size - SUFFIX_BYTES))
        self._body_hash = hashlib.sha256(self.body)

    def new(self) -> Blob:
        suffix = os.urandom(SUFFIX_BYTES)
        digest = self._body_hash.copy()
        digest.update(suffix)
        return Blob((self.body, suffix), f"sha256:{digest.hexdigest()}")


def push_monolithic(repo: str, blob: Blob) -> Operation:
    """POST to open an upload, then PUT the whole body with ?digest=: docker's and skopeo's way."""
    opened = yield Request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
    target = with_query(path_of(opened.headers["location"]), "digest", blob.digest)
    yield Request("PUT", target, dict(OCTET_STREAM), blob.parts, expect=(201,))
    return blob.size


def push_single_post(repo: str, blob: Blob) -> Operation:
    """One POST ?digest= carrying the body (the spec's optional monolithic form).

    A registry that does not support it answers 202 with an upload location; the client then PUTs
    the body there, as the spec says. That costs a second transfer, and is what such a server gets.
    """
    target = with_query(f"/v2/{repo}/blobs/uploads/", "digest", blob.digest)
    answer = yield Request("POST", target, dict(OCTET_STREAM), blob.parts, expect=(201, 202))
    if answer.status == 202:
        put_target = with_query(path_of(answer.headers["location"]), "digest", blob.digest)
        yield Request("PUT", put_target, dict(OCTET_STREAM), blob.parts, expect=(201,))
    return blob.size


def push_chunked(repo: str, blob: Blob, chunk_size: int) -> Operation:
    """POST, then PATCH chunk after chunk with Content-Range, then PUT ?digest= with no body."""
    answer = yield Request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
    for start in range(0, blob.size, chunk_size):
        end = min(start + chunk_size, blob.size)
        headers = {**OCTET_STREAM, "Content-Range": f"{start}-{end - 1}"}
        target = path_of(answer.headers["location"])
        answer = yield Request("PATCH", target, headers, blob.slice(start, end), expect=(202,))
    target = with_query(path_of(answer.headers["location"]), "digest", blob.digest)
    yield Request("PUT", target, expect=(201,))
    return blob.size


def pull_blob(repo: str, digest: str, size: int) -> Operation:
    answer = yield Request("GET", f"/v2/{repo}/blobs/{digest}", expect=(200,))
    if answer.length != size:
        raise ValueError(f"GET {digest} gave {answer.length} bytes, expected {size}")
    return answer.length


def pull_blob_following(repo: str, digest: str, size: int) -> Operation:
    """GET the blob, following a 307 to where the registry points (a presigned object store URL), as
    docker, containerd and skopeo do. The redirect is not signed for a Host: the client keeps one
    keep-alive connection to the registry and one to the store."""
    answer = yield Request("GET", f"/v2/{repo}/blobs/{digest}", expect=(200, 307))
    if answer.status == 307:
        origin, target = split_url(answer.headers["location"])
        answer = yield Request("GET", target, origin=origin, expect=(200,))
    if answer.length != size:
        raise ValueError(f"GET {digest} gave {answer.length} bytes, expected {size}")
    return answer.length
