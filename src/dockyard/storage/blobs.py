"""Content-addressed blobs: bytes in the driver, one row each in the `blobs` table.

Commit order (crash-safe): verify size and digest, land the bytes at the content address, then record
in the DB. A crash between the last two leaves bytes with no row, which is harmless: the next commit of
the same digest replaces them, and the same PUT sent again (by HAProxy's `retry-on empty-response` or the
client, to any node) finds its upload's bytes gone and the blob at its address, and completes from there.

Garbage collection marks a row it is deleting (`deleting_since`, a tombstone), deletes the bytes, then
the row (gc.blobs). A tombstoned row counts as absent for every reader, and an upload never records
over one: `commit_upload` decides under the row's lock (PostgreSQL: FOR KEY SHARE, which waits for
the collector's FOR UPDATE; SQLite: writes are serial) whether the blob is live (link it, drop the
upload's bytes), absent (land the bytes first, then insert the row) or being deleted (wait until the
row is gone, then land the bytes). So the collector never deletes bytes a row still needs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO

from sqlalchemy import ColumnElement, Connection, bindparam, select

from dockyard.content.digest import Digest, new_hasher
from dockyard.db.dialect import insert_for
from dockyard.db.session import Database
from dockyard.db.statements import DriverStatement
from dockyard.errors import BlobBeingDeleted, BlobUploadInvalid, DockyardError, PathNotFound, SizeInvalid
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.models import Blob
from dockyard.storage.paths import blob_data_path
from dockyard.storage.uploads import UploadState, UploadStore, VerifiedUpload

# How long an upload waits for the collector to finish deleting the same blob before it answers
# "try again" (a batch's deletes take a second or so; a crashed run's tombstones wait for the next run).
WAIT_FOR_DELETE_SECONDS = 30.0


class BlobState(Enum):
    ABSENT = "absent"
    LIVE = "live"
    DELETING = "deleting"  # tombstoned by garbage collection: absent to readers, bytes going


def live() -> ColumnElement[bool]:
    """SQL: the blob row is not being deleted (what every reader adds to its query)."""
    return Blob.deleting_since.is_(None)


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """How to send a blob: a local file for zero-copy, a presigned URL, or a stream to open."""

    digest: str
    size: int
    local_path: str | None
    redirect_url: str | None


# Built once: every commit reads the blob's state twice, and records it (db.statements: on the driver).
_STATE = select(Blob.deleting_since).where(Blob.digest == bindparam("digest"))
_STATE_IN = DriverStatement(_STATE)
_STATE_LOCKED = DriverStatement(_STATE.with_for_update(read=True, key_share=True))
# RETURNING, not rowcount: a driver may report a row for an insert the conflict turned into nothing.
_RECORD = DriverStatement(
    lambda dialect: insert_for(dialect, Blob).on_conflict_do_nothing().returning(Blob.digest),
    column_keys=("digest", "size"),
)


class LandedBefore:
    """An upload whose bytes an earlier, cut-off commit landed at the content address already."""

    def land(self, target: str) -> None:
        pass

    def discard(self) -> None:
        pass


class BlobStore:
    def __init__(
        self,
        db: Database,
        driver: StorageDriver,
        uploads: UploadStore,
        wait_for_delete: float = WAIT_FOR_DELETE_SECONDS,
    ) -> None:
        self._db = db
        self._driver = driver
        self._uploads = uploads
        self._wait_for_delete = wait_for_delete
        self._state = db.lookups.prepare(_STATE)  # the commit's first look, on the driver (db.lookups)

    def state_of(self, connection: Connection, digest: str, lock: bool = False) -> BlobState:
        """With lock, the row is share-locked for the rest of the transaction (PostgreSQL: waits
        for a collector holding it, then reads what it committed)."""
        row = (_STATE_LOCKED if lock else _STATE_IN).execute(connection, {"digest": digest}).first()
        if row is None:
            return BlobState.ABSENT
        return BlobState.LIVE if row.deleting_since is None else BlobState.DELETING

    def _state_now(self, digest: str) -> BlobState:
        """The blob's state as last committed (one autocommitted point read)."""
        row = self._db.lookups.one(self._state, {"digest": digest})
        if row is None:
            return BlobState.ABSENT
        return BlobState.LIVE if row[0] is None else BlobState.DELETING

    def record(self, connection: Connection, digest: str, size: int) -> bool:
        """Insert the blob's row unless one is there (live or tombstoned); whether this inserted it."""
        return _RECORD.execute(connection, {"digest": digest, "size": size}).first() is not None

    def commit_upload(
        self,
        state: UploadState,
        digest: Digest,
        link: Callable[[Connection], None],
        expected_size: int | None = None,
    ) -> int:
        """Verify the upload's bytes, make sure they are stored, and record the blob; `link` runs in
        the same transaction, after the blob row is there and locked (repository link, quota, the
        upload's row). Returns the size. BlobBeingDeleted when the collector holds the blob too long."""
        if expected_size is not None and expected_size != state.size:
            raise SizeInvalid(detail={"expected": expected_size, "received": state.size})
        key = str(digest)
        seen = self._state_now(key)
        upload: VerifiedUpload | LandedBefore
        try:
            upload = self._uploads.verified(state, digest)
        except PathNotFound:
            upload = self._landed_before(state, digest)
        landed = False
        try:
            if seen is BlobState.ABSENT:  # the common case: land first, so the write transaction stays short
                upload.land(blob_data_path(key))
                landed = True
            deadline = time.monotonic() + self._wait_for_delete
            while True:
                with self._db.write() as connection:
                    # Recording a row that was not there, this transaction made the blob live and
                    # holds its row to the commit (no collector can tombstone it): no look needed.
                    # A no-op when another upload inserted it first or (with a window of about zero)
                    # a collector tombstoned it since: the look tells which.
                    inserted = landed and self.record(connection, key, state.size)
                    current = BlobState.LIVE if inserted else self.state_of(connection, key, lock=True)
                    if current is BlobState.LIVE:
                        link(connection)
                        break
                if current is BlobState.ABSENT:  # it went while we looked: our bytes are needed
                    upload.land(blob_data_path(key))
                    landed = True
                elif landed:
                    # Collected between our look and now (only with a window of about zero): our
                    # bytes at the address are going with it and the upload's copy is spent.
                    raise BlobBeingDeleted(detail={"digest": key})
                else:
                    self._wait_while_deleting(key, deadline)
        except BaseException:
            if not landed:
                with contextlib.suppress(DockyardError):
                    upload.discard()
            raise
        if not landed:
            upload.discard()  # the blob was stored already
        return state.size

    def _landed_before(self, state: UploadState, digest: Digest) -> LandedBefore:
        """The upload's bytes are gone: a commit of it (on this node or another) was cut off after it
        landed them at the content address, before its transaction recorded them, and the PUT came
        again. The blob is there, exactly this size and digest, or the client must start over."""
        path = blob_data_path(str(digest))
        try:
            if self._driver.stat(path).size == state.size and self._digest_at(path, digest) == str(digest):
                return LandedBefore()
        except PathNotFound:
            pass
        raise BlobUploadInvalid("the upload's bytes are gone; restart the upload", detail={"uuid": state.id})

    def _digest_at(self, path: str, digest: Digest) -> str:
        hasher = new_hasher(digest.algorithm)
        with self._driver.open_read(path) as stream:
            while chunk := stream.read(4 * 1024 * 1024):
                hasher.update(chunk)
        return f"{digest.algorithm}:{hasher.hexdigest()}"

    def _wait_while_deleting(self, digest: str, deadline: float) -> None:
        pause = 0.02
        while True:
            if self._state_now(digest) is not BlobState.DELETING:
                return
            if time.monotonic() >= deadline:
                raise BlobBeingDeleted(detail={"digest": digest})
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def locate(self, digest: str, size: int, redirect: bool = False) -> BlobLocation:
        path = blob_data_path(digest)
        url = self._driver.url_for(path) if redirect else None
        return BlobLocation(digest, size, self._driver.local_path(path), url)

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        return self._driver.open_read(blob_data_path(digest), offset)
