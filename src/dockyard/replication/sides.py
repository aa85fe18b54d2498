"""The two ends of a copy, behind one small interface: this registry (`LocalSide`, through the registry
services, so quotas, immutable tags, the change feed and digest checks apply as for a client's push)
and a registry endpoint (`RemoteSide`, the upstream client: its SSRF guard and timeouts apply).

Blobs stream: `open_blob` yields chunks and `push_blob` consumes them, never a whole blob in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dockyard.errors import BlobUnknown, DockyardError, ManifestUnknown, NameUnknown
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.services import Registry
from dockyard.replication.interfaces import ManifestData
from dockyard.storage.blobs import BlobStore
from dockyard.upstream.interfaces import DEFAULT_ACCEPT, UpstreamNotFound

if TYPE_CHECKING:
    from dockyard.upstream.client import HttpRemoteRegistry

CHUNK = 1 << 20
PAGE = 1000


class LocalSide:
    where = "local"

    def __init__(self, registry: Registry, blob_uploads: BlobUploads, blobs: BlobStore) -> None:
        self.registry = registry
        self.blob_uploads = blob_uploads
        self.blobs = blobs

    def repositories(self) -> list[str]:
        names: list[str] = []
        last: str | None = None
        while True:
            page = self.registry.catalog(PAGE, last)
            names.extend(page.items)
            if not page.more or not page.items:
                return names
            last = page.items[-1]

    def tags(self, repository: str) -> list[str]:
        tags: list[str] = []
        last: str | None = None
        try:
            while True:
                page = self.registry.list_tags(repository, PAGE, last)
                tags.extend(page.items)
                if not page.more or not page.items:
                    return tags
                last = page.items[-1]
        except NameUnknown:
            return tags

    def manifest(self, repository: str, reference: str) -> ManifestData | None:
        try:
            record = self.registry.get_manifest(repository, reference)
        except (ManifestUnknown, NameUnknown):
            return None
        return ManifestData(record.media_type, record.digest, record.content)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        found = self.manifest(repository, reference)
        return None if found is None else found.digest

    def has_blob(self, repository: str, digest: str) -> bool:
        try:
            self.registry.blob_size(repository, digest)
        except (BlobUnknown, NameUnknown):
            return False
        return True

    def mount_blob(self, repository: str, digest: str, sources: Iterable[str]) -> bool:
        return self.registry.mount_blob(repository, digest, None) is not None

    def open_blob(self, repository: str, digest: str) -> tuple[int | None, Iterator[bytes], Any]:
        size = self.registry.blob_size(repository, digest)
        stream = self.blobs.open(digest)

        def chunks() -> Iterator[bytes]:
            while chunk := stream.read(CHUNK):
                yield chunk

        return size, chunks(), stream.close

    def push_blob(self, repository: str, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """An upload session of its own, hashed as it is written; the commit verifies digest and size
        and records nothing when they differ."""
        uploads = self.blob_uploads
        state = uploads.start(repository)
        try:
            session = uploads.begin_append(state)
        except BaseException:
            uploads.drop(state)
            raise
        finished = False
        try:
            for chunk in chunks:
                session.write(chunk)
            state = session.finish(record=False)
            finished = True
            uploads.commit(state, digest, size)
        except BaseException:
            if finished:
                with contextlib.suppress(Exception):
                    uploads.release(state)
                uploads.drop(state)
            else:
                with contextlib.suppress(Exception):
                    session.abort()
            raise

    def put_manifest(self, repository: str, reference: str, manifest: ManifestData) -> None:
        self.registry.put_manifest(repository, reference, manifest.data, manifest.media_type)

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        try:
            return list(self.registry.referrers(repository, digest, None).descriptors)
        except NameUnknown:
            return []

    def delete_tag(self, repository: str, tag: str) -> None:
        self.registry.delete_manifest(repository, tag)


class RemoteSide:
    def __init__(self, remote: HttpRemoteRegistry) -> None:
        self.remote = remote
        self.where = remote.base

    def repositories(self) -> list[str]:
        return self.remote.catalog()

    def tags(self, repository: str) -> list[str]:
        try:
            return self.remote.list_tags(repository)
        except UpstreamNotFound:
            return []

    def manifest(self, repository: str, reference: str) -> ManifestData | None:
        try:
            found = self.remote.get_manifest(repository, reference, DEFAULT_ACCEPT)
        except UpstreamNotFound:
            return None
        return ManifestData(found.media_type, found.digest, found.data)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        try:
            info = self.remote.head_manifest(repository, reference, DEFAULT_ACCEPT)
        except UpstreamNotFound:
            return None
        if info.digest is None:  # a registry without Docker-Content-Digest: ask for the bytes
            found = self.manifest(repository, reference)
            return None if found is None else found.digest
        return info.digest

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.remote.has_blob(repository, digest)

    def mount_blob(self, repository: str, digest: str, sources: Iterable[str]) -> bool:
        for source in sources:
            if source != repository and self.remote.mount_blob(repository, digest, source):
                return True
        return False

    def open_blob(self, repository: str, digest: str) -> tuple[int | None, Iterator[bytes], Any]:
        stream = self.remote.open_blob(repository, digest)
        return stream.size, stream.chunks(CHUNK), stream.close

    def push_blob(self, repository: str, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        self.remote.push_blob(repository, digest, size, chunks)

    def put_manifest(self, repository: str, reference: str, manifest: ManifestData) -> None:
        self.remote.put_manifest(repository, reference, manifest.media_type, manifest.data)

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        return self.remote.referrers(repository, digest) or []

    def delete_tag(self, repository: str, tag: str) -> None:
        """registry:2 deletes manifests by digest only (every tag of it goes): by tag first, then by
        the tag's digest."""
        try:
            self.remote.delete_manifest(repository, tag)
        except DockyardError:
            digest = self.manifest_digest(repository, tag)
            if digest is None:
                return
            self.remote.delete_manifest(repository, digest)
