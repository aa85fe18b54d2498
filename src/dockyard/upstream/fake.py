"""An in-memory RemoteRegistry: what tests of the cache and replication use instead of a network.

`put_blob`/`put_manifest` seed it; `fail_with` makes every call raise an error (an upstream that is down,
rate limiting or refusing credentials); `calls` records what was asked, so tests can check that a cached
pull did not go upstream.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence

from dockyard.content.digest import looks_like_digest, parse_digest
from dockyard.content.reference import validate_name
from dockyard.upstream.interfaces import (
    DEFAULT_ACCEPT,
    Check,
    Manifest,
    ManifestInfo,
    UpstreamError,
    UpstreamInvalid,
    UpstreamNotFound,
)


class FakeBlobStream:
    def __init__(self, data: bytes, offset: int) -> None:
        self._body = io.BytesIO(data[offset:])
        self.offset = offset
        self.size: int | None = len(data)

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        while chunk := self._body.read(chunk_size):
            yield chunk

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> FakeBlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeRemoteRegistry:
    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # by digest
        self.tags: dict[tuple[str, str], str] = {}  # (repository, tag) -> digest
        self.calls: list[tuple[str, str, str]] = []
        self.fail_with: UpstreamError | None = None

    # --- seeding -------------------------------------------------------------------------------
    def put_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[(repository, digest)] = data
        return digest

    def put_manifest(self, repository: str, data: bytes, media_type: str, tag: str | None = None) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifests[(repository, digest)] = (media_type, data)
        if tag is not None:
            self.tags[(repository, tag)] = digest
        return digest

    # --- RemoteRegistry --------------------------------------------------------------------------
    def check(self) -> Check:
        self._called("check", "", "")
        return Check("registry/2.0", "none")

    def head_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> ManifestInfo:
        self._called("head_manifest", repository, reference)
        media_type, digest, data = self._manifest(repository, reference, accept)
        return ManifestInfo(media_type, digest, len(data))

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> Manifest:
        self._called("get_manifest", repository, reference)
        media_type, digest, data = self._manifest(repository, reference, accept)
        return Manifest(media_type, digest, data)

    def head_blob(self, repository: str, digest: str) -> int:
        self._called("head_blob", repository, digest)
        return len(self._blob(repository, digest))

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> FakeBlobStream:
        self._called("open_blob", repository, digest)
        data = self._blob(repository, digest)
        if offset < 0:
            raise ValueError("offset must not be negative")
        if offset and offset >= len(data):
            raise UpstreamError(f"the upstream answered 416 for blob {digest}")
        return FakeBlobStream(data, offset)

    def list_tags(self, repository: str, limit: int = 10_000) -> list[str]:
        self._called("list_tags", repository, "")
        validate_name(repository)
        tags = sorted(tag for (repo, tag) in self.tags if repo == repository)
        if not tags and not any(repo == repository for repo, _ in self.manifests):
            raise UpstreamNotFound(f"repository {repository} is not on the upstream")
        return tags[:limit]

    def close(self) -> None:
        pass

    # --- helpers ---------------------------------------------------------------------------------
    def _called(self, method: str, repository: str, reference: str) -> None:
        self.calls.append((method, repository, reference))
        if self.fail_with is not None:
            raise self.fail_with

    def _manifest(self, repository: str, reference: str, accept: Sequence[str]) -> tuple[str, str, bytes]:
        validate_name(repository)
        if looks_like_digest(reference) or ":" in reference:
            digest = str(parse_digest(reference))
        elif not reference or "/" in reference:
            raise UpstreamInvalid(f"invalid reference {reference!r}")
        else:
            digest = self.tags.get((repository, reference), "")
        found = self.manifests.get((repository, digest))
        if found is None:
            raise UpstreamNotFound(f"manifest {repository}:{reference} is not on the upstream")
        media_type, data = found
        if media_type not in accept and json.loads(data).get("mediaType") not in accept:
            # What registries do when no type fits: the manifest is not found for that client.
            raise UpstreamNotFound(f"manifest {repository}:{reference} is not in an accepted type")
        return media_type, digest, data

    def _blob(self, repository: str, digest: str) -> bytes:
        validate_name(repository)
        parse_digest(digest)
        data = self.blobs.get((repository, digest))
        if data is None:
            raise UpstreamNotFound(f"blob {digest} is not on the upstream")
        return data
