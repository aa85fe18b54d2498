"""The two ends of a copy, behind one small interface: this registry (`LocalSide`, through the registry
services, so quotas, immutable tags, the change feed and digest checks apply as for a client's push)
and a registry endpoint (`RemoteSide`, the upstream client: its SSRF guard and timeouts apply).

Blobs stream: `open_blob` yields chunks and `push_blob` consumes them, never a whole blob in memory. A
blob copy cut off midway (the source or the destination dropped, a cancel, the worker killed) keeps the
destination's upload in the policy's pending uploads, and the next try continues it: the local upload
session's recorded bytes (recorded every RECORD_EVERY bytes, so a killed worker loses at most that), or
the remote upload's (its status: a GET on its URL); the source is asked from there with a range.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dockyard.errors import BlobUnknown, BlobUploadUnknown, DockyardError, ManifestUnknown, NameUnknown
from dockyard.jobs.interfaces import JobCancelled
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.services import Registry
from dockyard.replication.interfaces import BlobSource, ManifestData, OpenBlob, PendingUploads
from dockyard.storage.blobs import BlobStore
from dockyard.storage.uploads import UploadState
from dockyard.upstream.interfaces import (
    DEFAULT_ACCEPT,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from dockyard.upstream.client import HttpRemoteRegistry

CHUNK = 1 << 20
PAGE = 1000
RECORD_EVERY = 16 << 20  # bytes of a blob between two records of where its copy got to
OWNER = "replication"  # the local upload sessions of replication: no client can continue them
# What cuts a copy off but leaves what it wrote worth continuing.
INTERRUPTED = (UpstreamUnavailable, JobCancelled, OSError)


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

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> BlobSource:
        size = self.registry.blob_size(repository, digest)
        stream = self.blobs.open(digest, min(offset, size))

        def chunks() -> Iterator[bytes]:
            while chunk := stream.read(CHUNK):
                yield chunk

        return BlobSource(min(offset, size), size, chunks(), stream.close)

    def push_blob(
        self, repository: str, digest: str, size: int, open_source: OpenBlob, pending: PendingUploads
    ) -> None:
        """An upload session of its own (or the one a copy cut off earlier left, continued from its
        recorded bytes), hashed as it is written, its progress recorded every RECORD_EVERY bytes; the
        commit verifies digest and size and records nothing when they differ."""
        uploads = self.blob_uploads
        state = self._pending_upload(repository, digest, pending)
        try:
            session = uploads.begin_append(state)
        except DockyardError:  # busy (another worker on it) or inconsistent: a fresh one
            pending.drop(repository, digest)
            state = uploads.start(repository, OWNER)
            session = uploads.begin_append(state)
        kept = state.size > 0
        finished = False
        source: BlobSource | None = None
        try:
            source = open_source(state.size)
            for chunk in _from(source, state.size):
                session.write(chunk)
                if session.received >= RECORD_EVERY:  # where a killed worker's successor continues
                    state = session.finish()
                    if not kept:
                        pending.put(repository, digest, state.id)
                        kept = True
                    session = uploads.begin_append(state)
            state = session.finish(record=False)
            finished = True
            uploads.commit(state, digest, size)
        except INTERRUPTED:
            if finished:  # the commit was cut off: its bytes are all there, the next try commits
                with contextlib.suppress(Exception):
                    uploads.release(state)
                raise
            try:
                state = session.finish()  # keep what arrived
                pending.put(repository, digest, state.id)
            except Exception:
                with contextlib.suppress(Exception):
                    session.abort()
                pending.drop(repository, digest)
            raise
        except BaseException:
            if finished:
                with contextlib.suppress(Exception):
                    uploads.release(state)
                uploads.drop(state)
            else:
                with contextlib.suppress(Exception):
                    session.abort()
            if kept:
                pending.drop(repository, digest)
            raise
        finally:
            if source is not None:
                source.close()
        if kept:
            pending.drop(repository, digest)

    def _pending_upload(self, repository: str, digest: str, pending: PendingUploads) -> UploadState:
        """The upload a copy of this blob cut off earlier left, or a new one."""
        upload_id = pending.get(repository, digest)
        if upload_id is not None:
            try:
                return self.blob_uploads.get(repository, upload_id, OWNER)
            except (BlobUploadUnknown, DockyardError):  # committed, purged or cancelled since
                pending.drop(repository, digest)
        return self.blob_uploads.start(repository, OWNER)

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
    """A registry endpoint. A blob the destination may lack costs the registry a HEAD, then a POST and
    a PUT: on Debian's docker-registry (distribution 2.8) a third of its CPU per blob copied goes to
    the HEAD, most of it the cost of any request. Once the registry has shown that it mounts (its
    answer to a cross-repository mount, or to one of a blob just copied from the repository into
    itself, asked once per run), the question is a POST that mounts the blob from the repository
    itself: 201 when it is there, else the upload that the copy then PUTs the blob into (`has_blob`
    keeps it for `push_blob`). A registry that does not mount is asked with a HEAD, as before."""

    def __init__(self, remote: HttpRemoteRegistry) -> None:
        self.remote = remote
        self.where = remote.base
        self.mounts: bool | None = None  # whether the registry mounts blobs; None: not known yet
        # Uploads a mount POST started, for the push of that blob to take: (repository, digest) -> URLs.
        self._started: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

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
        if self.mounts:
            try:
                location = self.remote.mount_or_upload(repository, digest, repository)
            except (UpstreamUnavailable, UpstreamUnauthorized):
                raise
            except UpstreamError:  # refused (a repository it has not made yet, say): a HEAD tells
                return self.remote.has_blob(repository, digest)
            if location is None:
                return True
            with self._lock:
                self._started.setdefault((repository, digest), []).append(location)
            return False
        return self.remote.has_blob(repository, digest)

    def mount_blob(self, repository: str, digest: str, sources: Iterable[str]) -> bool:
        for source in sources:
            if source != repository and self.remote.mount_blob(repository, digest, source):
                self.mounts = True
                self._cancel_started(repository, digest)
                return True
        return False

    def _take_started(self, repository: str, digest: str) -> str | None:
        with self._lock:
            started = self._started.get((repository, digest))
            if not started:
                return None
            location = started.pop()
            if not started:
                del self._started[(repository, digest)]
            return location

    def _cancel_started(self, repository: str, digest: str) -> None:
        while (location := self._take_started(repository, digest)) is not None:
            self.remote.cancel_upload(repository, location)

    def _learn_mounts(self, repository: str, digest: str) -> None:
        """Whether the registry mounts, asked once per run: a mount of the blob just copied from its
        repository into itself (a registry that does not mount starts an upload, cancelled)."""
        try:
            location = self.remote.mount_or_upload(repository, digest, repository)
        except (UpstreamUnavailable, UpstreamUnauthorized):
            raise
        except UpstreamError:
            self.mounts = False
            return
        self.mounts = location is None
        if location is not None:
            self.remote.cancel_upload(repository, location)

    def close(self) -> None:
        """Cancel the uploads a mount POST started that no push took (a cancelled run's, say)."""
        with self._lock:
            started, self._started = self._started, {}
        for (repository, _), locations in started.items():
            for location in locations:
                self.remote.cancel_upload(repository, location)

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> BlobSource:
        stream = self.remote.open_blob(repository, digest, offset)  # a ranged GET from `offset`
        return BlobSource(stream.offset, stream.size, stream.chunks(CHUNK), stream.close)

    def push_blob(
        self, repository: str, digest: str, size: int, open_source: OpenBlob, pending: PendingUploads
    ) -> None:
        """A fresh blob is one POST and one PUT with the body. One cut off earlier continues: the
        upload's status (a GET on its URL, what the registry holds), a PATCH with the rest, the PUT.
        A registry that dropped the upload (registry:2 does) gets a fresh one."""
        remote = self.remote
        location = stored = pending.get(repository, digest)
        offset = 0
        if location is not None:
            try:
                offset, location = remote.upload_status(repository, location)
            except UpstreamUnavailable:
                raise
            except UpstreamError:
                pending.drop(repository, digest)
                location = stored = None
        if location is None or offset > size:
            location = self._take_started(repository, digest) or remote.start_upload(repository)
            offset = 0
        kept = Kept(pending, repository, digest, location, stored)
        source: BlobSource | None = None
        try:
            source = open_source(offset)
            chunks = kept.watch(_from(source, offset), offset)
            if offset == 0:
                remote.finish_upload(repository, location, digest, size, chunks)
            else:
                kept.location = remote.patch_upload(repository, location, offset, size, chunks)
                remote.finish_upload(repository, kept.location, digest)
        except INTERRUPTED:
            kept.keep()
            raise
        except UpstreamError:
            if offset == 0:
                kept.drop()
                raise
            # The registry would not continue it (a range it does not hold, say): once more, fresh.
            kept.drop()
            if source is not None:
                source.close()
                source = None
            self.push_blob(repository, digest, size, open_source, pending)
            return
        except BaseException:
            kept.drop()
            raise
        finally:
            if source is not None:
                source.close()
        kept.drop()
        if self.mounts is None:
            self._learn_mounts(repository, digest)

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


class Kept:
    """A remote upload in the pending uploads: put there once RECORD_EVERY bytes went (a worker killed
    now has something to continue) or when the copy is cut off, dropped when it is done."""

    def __init__(
        self, pending: PendingUploads, repository: str, digest: str, location: str, stored: str | None
    ) -> None:
        self.pending, self.repository, self.digest, self.location = pending, repository, digest, location
        self.stored = stored  # what the pending uploads hold for the blob now

    def watch(self, chunks: Iterator[bytes], offset: int) -> Iterator[bytes]:
        sent = 0
        for chunk in chunks:
            yield chunk
            sent += len(chunk)
            if sent >= RECORD_EVERY and self.stored is None:
                self.keep()

    def keep(self) -> None:
        if self.stored != self.location:
            self.pending.put(self.repository, self.digest, self.location)
            self.stored = self.location

    def drop(self) -> None:
        if self.stored is not None:
            self.pending.drop(self.repository, self.digest)
            self.stored = None


def _from(source: BlobSource, offset: int) -> Iterator[bytes]:
    """The source's chunks from `offset` on: a source that ignored the range asked for (it started at
    0) is read again from its start, and the bytes before `offset` (written already) are skipped."""
    if source.start > offset:
        raise UpstreamError(f"the source answered from byte {source.start}, not {offset}")
    skip = offset - source.start
    for chunk in source.chunks:
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        yield chunk
