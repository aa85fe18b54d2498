"""Blob uploads into a repository, as /v2 runs them: the one service the HTTP layer calls for an upload
session -- start, find, append a request's body (`begin_append`), commit, cancel -- and what a request
may add to one (`budget`: registry.upload_budget). The sessions and their states are `storage.uploads`;
a commit records the blob and links it into the repository, charged to its project's quota, in the
order that survives crashes (and garbage collection: storage.blobs).

An upload session belongs to the repository and the owner (who started it, with auth on) it was
started for: to anyone else it does not exist (BlobUploadUnknown), whatever they ask of it.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection

from dockyard.content.digest import parse_digest
from dockyard.content.reference import validate_name
from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.session import Database
from dockyard.errors import DockyardError, ReadOnly
from dockyard.projects.quotas import Quotas
from dockyard.registry.repository_writes import ensure_repository, link_blob
from dockyard.registry.upload_budget import UploadBudget
from dockyard.storage.blobs import BlobStore
from dockyard.storage.uploads import AppendSession, UploadState, UploadStore

DEFAULT_MAX_UPLOAD_SIZE = 16 * 1024**3  # storage.uploads.max_size


class BlobUploads:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        uploads: UploadStore,
        feed: ChangeFeed,
        quotas: Quotas,
        read_only: bool = False,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._uploads = uploads
        self._feed = feed
        self._quotas = quotas
        self.read_only = read_only
        self.max_upload_size = max_upload_size

    def start(self, name: str, owner: str | None = None, recorded: bool = True) -> UploadState:
        """A new upload session; `recorded=False`: one the same request fills and commits, with no row
        (storage.uploads.UploadStore.create)."""
        self._check_writable()
        validate_name(name)
        return self._uploads.create(name, owner, recorded)

    def get(self, name: str, upload_id: str, owner: str | None = None) -> UploadState:
        validate_name(name)
        return self._uploads.get(upload_id, name, owner)

    def cancel(self, name: str, upload_id: str, owner: str | None = None) -> None:
        validate_name(name)
        self._uploads.cancel(upload_id, name, owner)

    def begin_append(self, state: UploadState, commits: bool = False) -> AppendSession:
        """Start streaming a request's body onto an open upload (storage.uploads.sessions); `commits`:
        the request commits the upload once its body is in."""
        return self._uploads.begin_append(state, whole=commits)

    def drop(self, state: UploadState) -> None:
        """Cancel an upload that can never complete (a bad digest, a body cut short on a session whose id
        the client never learnt), quietly: it may be gone already."""
        with contextlib.suppress(DockyardError):
            if not state.recorded:
                self._uploads.discard(state)
                return
            self._uploads.cancel(state.id, state.repository, state.owner)

    def release(self, state: UploadState) -> None:
        """After a commit failed before it reached storage: let the upload's next request in (a writer
        this request held for the commit is closed, its unrecorded bytes kept for nobody)."""
        self._uploads.close_held(state.id)

    def commit(self, state: UploadState, digest: str, expected_size: int | None = None) -> int:
        """Verify, move into place, then record the blob and link it: the order that survives crashes
        (and garbage collection: storage.blobs)."""
        self._check_writable()
        parsed = parse_digest(digest)
        # Refuse before moving anything when the quota has no room; the charge below is the exact check.
        self._quotas.check_room(state.repository, state.size, digest)
        created = False

        def link(connection: Connection) -> None:  # in the transaction that records the blob
            nonlocal created
            repository = ensure_repository(connection, state.repository)
            created = repository.created
            link_blob(connection, self._quotas, repository, digest, state.size)
            self._uploads.forget(connection, state)

        size = self._blobs.commit_upload(state, parsed, link, expected_size)
        if created:
            self._feed.bump(Topic.REPOSITORIES)  # the catalog changed
        self._uploads.clean_up(state)  # committed
        return size

    def budget(self, name: str, size: int, digest: str | None = None) -> UploadBudget:
        """What a request may add to an upload of `name` holding `size` bytes (registry.upload_budget):
        for the edge to refuse a body before reading it, and to stop reading one past it."""
        validate_name(name)
        return UploadBudget(self.max_upload_size, size, self._quotas.upload_room(name, size, digest))

    def _check_writable(self) -> None:
        # The configured mode, or the runtime switch (db.readonly: `dockyard move`, `read-only on`).
        if self.read_only or self._db.is_read_only():
            raise ReadOnly()
