"""Upload sessions: a DB row plus a temp object in storage, so they survive restarts and nodes.

Bytes are hashed as they arrive. The running hash lives in this process only (hashlib state
cannot be saved); when a chunk or the commit lands on a process without it, the commit hashes
the temp object again instead, so correctness never depends on which process got which request.

When the request that brings the last bytes also commits (a monolithic POST, a PUT with the final
chunk), its writer is not closed: it is held for the commit, which checks the running hash and then
has the writer land its bytes straight at the content address (`FileWriter.commit_to`). On S3 that
skips the sidecar written and read back, the temp object, and the HEAD/COPY/DELETE of a move: a
small blob is one PutObject. A PATCH that leaves the upload unfinished still closes its writer to
the sidecar, so any node can resume it.

Whatever writes an upload's bytes (a chunk, until its new size is recorded; a commit, until the bytes
have landed) holds the storage driver's lock on the upload's directory (`StorageDriver.try_lock`): a
second request on the same upload meanwhile is refused (UploadBusy) instead of writing between its
bytes. So when the lock is exclusive (local disk, in-memory) and the temp object holds more bytes than
the row records, they are a chunk whose process died before it recorded them: they are cut off and the
upload resumes from the recorded size. (On S3 a killed chunk leaves no such bytes: its state is saved
when it closes, just before the size is recorded.) S3 has no lock, so requests on two nodes may each
write a state of the same upload: the row records which state (`FileWriter.fingerprint`) its size
belongs to, in the statement that records the size, and a resume or commit that finds another refuses
and drops the upload instead of trusting a running hash of other bytes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, delete, insert, select, update

from dockyard.content.digest import CANONICAL_ALGORITHM, Digest, new_hasher
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    ChunkOutOfOrder,
    DigestInvalid,
    DockyardError,
    PathNotFound,
    StorageError,
    UploadBusy,
)
from dockyard.storage.driver.base import FileWriter, PathLock, StorageDriver
from dockyard.storage.models import Upload
from dockyard.storage.paths import new_upload_id, upload_data_path, upload_path, uploads_root
from dockyard.storage.running_hashes import KEPT, RunningHashes

# Writers held open between the last chunk and the commit of the same request (milliseconds). One
# only outlives its request when the commit failed before it got to storage; past this many the
# oldest is closed to its sidecar, as a PATCH would have left it.
_HELD_WRITERS = 64

log = logging.getLogger("dockyard.storage.uploads")

# The statements every push runs, built once (building one costs more CPU than running it).
_CREATE = insert(Upload)
_BY_ID = select(
    Upload.id, Upload.repository, Upload.owner, Upload.size, Upload.created_at, Upload.storage_token
).where(Upload.id == bindparam("upload_id"))
_RECORD_SIZE = (
    update(Upload)
    .where(Upload.id == bindparam("upload_id"), Upload.size == bindparam("recorded_size"))
    .values(size=bindparam("new_size"), storage_token=bindparam("token"), updated_at=bindparam("now"))
)
_FORGET = delete(Upload).where(Upload.id == bindparam("upload_id"))


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    repository: str
    size: int
    created_at: datetime
    # Who started it ("user:12", "robot:3"; None with auth off): only they may continue or cancel it.
    owner: str | None = None
    # The writer state `size` was recorded with (Upload.storage_token; None: nothing to check).
    token: str | None = None


class AppendSession:
    """Appends one request's bytes to an upload, hashing as it writes. Not thread-safe: one
    writer thread at a time (the API feeds it sequentially)."""

    def __init__(
        self, store: UploadStore, state: UploadState, writer: FileWriter, hasher: Any, lock: PathLock
    ) -> None:
        self._store = store
        self.state = state
        self._writer = writer
        self._hasher = hasher
        self._lock = lock
        self.received = 0

    @property
    def size(self) -> int:
        return self.state.size + self.received

    def write(self, data: bytes) -> None:
        if self._hasher is not None:
            self._hasher.update(data)
        self._writer.write(data)
        self.received += len(data)

    def finish(self, record: bool = True) -> UploadState:
        """Keep the bytes and record the new size. With record=False the caller commits the upload
        next, in a transaction that removes its row, so the size update would be a wasted write, and
        the writer stays open for that commit (see the module docstring)."""
        if not record:
            state = replace(self.state, size=self.size)
            self._store._hashes.remember(state.id, state.size, self._hasher)
            self._store._hold_writer(state, self._writer, self._lock)  # the lock goes along
            return state
        try:
            self._writer.close()
            return self._store._record_progress(self.state, self.size, self._hasher, self._writer.fingerprint)
        finally:
            self._lock.release()  # only now: the bytes past the recorded size are no longer ours

    def abort(self) -> None:
        """A chunk failed half-way: the upload can no longer be trusted, so it is dropped."""
        try:
            self._writer.cancel()
            self._store.cancel(self.state.id, self.state.repository, self.state.owner)
        finally:
            self._lock.release()


class VerifiedUpload:
    """An upload whose bytes matched their digest and are not placed yet: `land` them at the content
    address or `discard` them, once. With a held writer (the last request's bytes, in no sidecar) that
    writer lands them (`FileWriter.commit_to`: one PutObject on S3); else the temp object is moved."""

    def __init__(
        self,
        store: UploadStore,
        state: UploadState,
        writer: FileWriter | None,
        in_temp: bool,
        lock: PathLock,
    ) -> None:
        self._store = store
        self._state = state
        self._writer = writer
        self._in_temp = in_temp  # the bytes were made whole in the temp object (and hashed there)
        self._lock = lock  # the upload's, held until the bytes landed or were dropped

    def land(self, target: str) -> None:
        try:
            self._land(target)
        finally:
            self._lock.release()

    def _land(self, target: str) -> None:
        store, state = self._store, self._state
        if self._in_temp:
            if state.size == 0:
                store._driver.put_content(target, b"")
                return
            store._driver.move(upload_data_path(state.id), target)
        else:
            writer = self._take_writer()
            if writer is None:  # nothing was ever written
                store._driver.put_content(target, b"")
                return
            writer.commit_to(target)
        store._settle(state.id)

    def discard(self) -> None:
        """Drop the bytes (the blob is stored already). The temp object, if any, goes with the
        upload's clean-up; a held or resumable multipart upload is aborted here."""
        try:
            if self._in_temp:
                return
            writer = self._take_writer()
            if writer is not None:
                writer.cancel()
                self._store._settle(self._state.id)
        finally:
            self._lock.release()

    def _take_writer(self) -> FileWriter | None:
        writer, self._writer = self._writer, None
        if writer is None and self._state.size > 0:
            writer = self._store._open_writer(self._state, self._lock)
        return writer


class UploadStore:
    def __init__(self, db: Database, driver: StorageDriver) -> None:
        self._db = db
        self._driver = driver
        self._hashes = RunningHashes()
        # Writers (with the upload's lock) held from a request's last chunk to its commit.
        self._held: OrderedDict[str, tuple[int, FileWriter, PathLock]] = OrderedDict()
        self._settled: OrderedDict[str, None] = OrderedDict()  # committed: no temp left to delete
        self._lock = threading.Lock()

    # --- sessions -----------------------------------------------------------------------------
    def create(self, repository: str, owner: str | None = None) -> UploadState:
        upload_id = new_upload_id()
        now = utcnow()
        with self._db.write() as connection:
            connection.execute(
                _CREATE,
                {
                    "id": upload_id,
                    "repository": repository,
                    "project": repository.split("/", 1)[0],  # as projects.rbac.project_of
                    "owner": owner,
                    "size": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        return UploadState(upload_id, repository, 0, now, owner)

    def get(self, upload_id: str, repository: str, owner: str | None = None) -> UploadState:
        """The session, if it belongs to this repository and owner: any other is BlobUploadUnknown, as
        if it did not exist (a caller may learn nothing of another's upload)."""
        upload_data_path(upload_id)  # refuses malformed ids before they reach the DB
        with self._db.read() as connection:
            row = connection.execute(_BY_ID, {"upload_id": upload_id}).first()
        if row is None or row.repository != repository or row.owner != owner:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        return UploadState(row.id, row.repository, row.size, row.created_at, row.owner, row.storage_token)

    def begin_append(self, state: UploadState) -> AppendSession:
        """Start writing a request's bytes at the end of the upload. UploadBusy, with nothing touched,
        while another request writes to it; ChunkOutOfOrder if another one moved it on since `state`
        was read."""
        lock = self._lock_upload(state.id)
        try:
            writer = self._open_writer(state, lock)
        except BaseException:
            lock.release()
            raise
        return AppendSession(self, state, writer, self._hashes.take(state.id, state.size), lock)

    def close_held(self, upload_id: str) -> None:
        """After a commit failed before it reached storage: keep the bytes of the last request's body
        for nobody (they were not recorded) and let the next request on the upload in."""
        with self._lock:
            _, writer, lock = self._held.pop(upload_id, (None, None, None))
        _close_quietly(writer, lock)

    def cancel(self, upload_id: str, repository: str, owner: str | None = None) -> None:
        """Drop the session and its bytes; BlobUploadUnknown, with nothing touched, unless it belongs
        to this repository and owner."""
        upload_data_path(upload_id)
        with self._db.write() as connection:
            result = connection.execute(
                delete(Upload).where(
                    Upload.id == upload_id, Upload.repository == repository, _owned_by(owner)
                )
            )
        if result.rowcount == 0:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        self._hashes.forget(upload_id)
        self._drop_held_writer(upload_id)
        self._delete_temp(upload_id)

    def forget(self, connection: Connection, state: UploadState) -> None:
        """Drop the upload's row, in the caller's transaction (the one that records the blob)."""
        result = connection.execute(_FORGET, {"upload_id": state.id})
        if result.rowcount != 1:
            raise BlobUploadUnknown("the upload was cancelled or purged while it was committed")

    def clean_up(self, state: UploadState) -> None:
        """After the commit: drop the running hash and any temp leftovers."""
        self._hashes.forget(state.id)
        with self._lock:
            settled = self._settled.pop(state.id, "no") is None
        if not settled:
            self._delete_temp(state.id)

    # --- verification -------------------------------------------------------------------------
    def computed_digest(self, state: UploadState, algorithm: str) -> str:
        """The digest of the upload's bytes, from the running hash when this process has it."""
        if algorithm == CANONICAL_ALGORITHM:
            hasher = self._hashes.peek(state.id, state.size)
            if hasher is not None:
                return f"{algorithm}:{hasher.hexdigest()}"
        return f"{algorithm}:{self._hash_temp(state, algorithm)}"

    def verify(self, state: UploadState, digest: Digest) -> None:
        _check_digest(digest, self.computed_digest(state, digest.algorithm))

    def verified(self, state: UploadState, digest: Digest) -> VerifiedUpload:
        """Verify the upload's bytes against digest, leaving them where they are: the caller then
        lands them at the content address or discards them (the blob is stored already), once it
        knows which. Nothing reaches the content address before the digest matched."""
        writer, lock = self._take_held_writer(state)
        if lock is None:
            lock = self._lock_upload(state.id)
        try:
            computed = self._running_digest(state, digest.algorithm)
            if computed is None:  # this process missed chunks: make the temp object whole, hash it there
                if writer is not None:
                    writer.commit()
                elif state.size > 0:
                    self._open_writer(state, lock).commit()
                self.verify(state, digest)
                return VerifiedUpload(self, state, None, True, lock)
            try:
                _check_digest(digest, computed)
            except DigestInvalid:
                if writer is not None:  # its bytes are in no sidecar yet: nobody else could drop them
                    with contextlib.suppress(DockyardError):
                        writer.cancel()
                raise
        except BaseException:
            lock.release()
            raise
        return VerifiedUpload(self, state, writer, False, lock)

    def _lock_upload(self, upload_id: str) -> PathLock:
        self.close_held(upload_id)  # a failed commit of ours may still hold it
        lock = self._driver.try_lock(upload_path(upload_id))
        if lock is None:
            raise UploadBusy(detail={"uuid": upload_id})
        return lock

    def _open_writer(self, state: UploadState, lock: PathLock) -> FileWriter:
        """A writer at the end of the upload's recorded bytes (the caller holds its lock)."""
        path = upload_data_path(state.id)
        append = state.size > 0
        if not append and lock.exclusive:
            # A writer for a new file would empty it: look first. Bytes there are a chunk recorded
            # since `state` was read (this request is behind) or the leftovers of a crash.
            with contextlib.suppress(PathNotFound):
                append = self._driver.stat(path).size > 0
        writer = self._driver.writer(path, append=append)
        # On S3 another node's request may have closed its own state over the recorded one.
        other_state = state.token is not None and writer.fingerprint not in (None, state.token)
        if writer.size != state.size or other_state:
            self._repair(state, writer, lock)
        return writer

    def _repair(self, state: UploadState, writer: FileWriter, lock: PathLock) -> None:
        """The temp object is not what the row records: truncate it to that, or give up."""
        with self._db.read() as connection:  # only on this rare path: the upload as recorded now
            recorded = connection.execute(
                select(Upload.size, Upload.storage_token).where(Upload.id == state.id)
            ).first()
        if recorded is None or (recorded.size, recorded.storage_token) != (state.size, state.token):
            writer.close()
            if recorded is None:
                raise BlobUploadUnknown(detail={"uuid": state.id})
            raise ChunkOutOfOrder(
                f"the upload moved on to {recorded.size} bytes while this request waited",
                detail={"uuid": state.id, "size": recorded.size},
            )
        if lock.exclusive and writer.size > state.size:
            # Nobody else can be writing them: a chunk that died before it was recorded.
            with contextlib.suppress(StorageError):
                dropped = writer.size - state.size
                writer.truncate(state.size)
                log.info("upload %s: cut %d unrecorded bytes past offset %d", state.id, dropped, state.size)
                return
        # Fewer bytes than recorded (lost), or more where another node may still be writing them (S3).
        writer.cancel()
        self.cancel(state.id, state.repository, state.owner)
        raise BlobUploadInvalid("upload state is inconsistent; restart the upload")

    def _running_digest(self, state: UploadState, algorithm: str) -> str | None:
        if algorithm != CANONICAL_ALGORITHM:
            return None
        hasher = self._hashes.peek(state.id, state.size)
        return None if hasher is None else f"{algorithm}:{hasher.hexdigest()}"

    # --- housekeeping -------------------------------------------------------------------------
    def purge_stale(self, age: timedelta, dry_run: bool = False) -> list[str]:
        """Delete upload sessions untouched for longer than age (and temp objects with no row)."""
        cutoff = utcnow() - age
        with self._db.read() as connection:
            stale = list(connection.scalars(select(Upload.id).where(Upload.updated_at < cutoff)))
            known = set(connection.scalars(select(Upload.id)))
        orphans = [upload_id for upload_id in self._temp_ids() if upload_id not in known]
        orphans = [upload_id for upload_id in orphans if self._temp_older_than(upload_id, cutoff)]
        if not dry_run:
            with self._db.write() as connection:
                if stale:
                    connection.execute(delete(Upload).where(Upload.id.in_(stale)))
            for upload_id in stale + orphans:
                self._hashes.forget(upload_id)
                self._drop_held_writer(upload_id)
                self._delete_temp(upload_id)
        return stale + orphans

    # --- internals ----------------------------------------------------------------------------
    def _record_progress(
        self, state: UploadState, size: int, hasher: Any, token: str | None
    ) -> UploadState:
        with self._db.write() as connection:
            values = {"upload_id": state.id, "recorded_size": state.size, "new_size": size}
            result = connection.execute(_RECORD_SIZE, {**values, "token": token, "now": utcnow()})
        if result.rowcount != 1:
            # Cancelled, or another request appended concurrently: both mean the bytes are suspect.
            raise BlobUploadInvalid("upload changed while this chunk was written; restart the upload")
        state = replace(state, size=size, token=token)
        self._hashes.remember(state.id, state.size, hasher)
        return state

    def _hold_writer(self, state: UploadState, writer: FileWriter, lock: PathLock) -> None:
        with self._lock:
            self._held[state.id] = (state.size, writer, lock)
            evicted = []
            while len(self._held) > _HELD_WRITERS:
                evicted.append(self._held.popitem(last=False)[1])
        for _, old, old_lock in evicted:
            _close_quietly(old, old_lock)

    def _take_held_writer(self, state: UploadState) -> tuple[FileWriter | None, PathLock | None]:
        with self._lock:
            size, writer, lock = self._held.pop(state.id, (None, None, None))
        if writer is not None and size != state.size:
            _close_quietly(writer, lock)  # not the bytes this commit is about: leave them to a resume
            return None, None
        return writer, lock

    def _drop_held_writer(self, upload_id: str) -> None:
        with self._lock:
            _, writer, lock = self._held.pop(upload_id, (None, None, None))
        if writer is not None:
            with contextlib.suppress(DockyardError):
                writer.cancel()
        if lock is not None:
            lock.release()

    def _settle(self, upload_id: str) -> None:
        with self._lock:
            self._settled[upload_id] = None
            while len(self._settled) > KEPT:
                self._settled.popitem(last=False)

    def _hash_temp(self, state: UploadState, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        if state.size == 0:
            return str(hasher.hexdigest())
        with self._driver.open_read(upload_data_path(state.id)) as stream:
            while chunk := stream.read(4 * 1024 * 1024):
                hasher.update(chunk)
        return str(hasher.hexdigest())

    def _delete_temp(self, upload_id: str) -> None:
        with contextlib.suppress(PathNotFound):
            self._driver.delete(upload_path(upload_id))

    def _temp_ids(self) -> list[str]:
        try:
            return [path.rsplit("/", 1)[-1] for path in self._driver.list(uploads_root())]
        except PathNotFound:
            return []

    def _temp_older_than(self, upload_id: str, cutoff: datetime) -> bool:
        """Whether a temp object with no row is old enough to be an orphan. One whose data file does
        not exist yet may belong to an upload created after the rows were read: judge it by its
        directory, and leave it alone when even that is gone."""
        for path in (upload_data_path, upload_path):
            try:
                return self._driver.stat(path(upload_id)).modified < cutoff.timestamp()
            except PathNotFound:
                continue
            except BlobUploadUnknown:
                return True  # not an upload id at all: nothing dockyard wrote
        return False


def _close_quietly(writer: FileWriter | None, lock: PathLock | None) -> None:
    try:
        if writer is not None:
            with contextlib.suppress(DockyardError):
                writer.close()
    finally:
        if lock is not None:
            lock.release()


def _owned_by(owner: str | None) -> ColumnElement[bool]:
    return Upload.owner.is_(None) if owner is None else Upload.owner == owner


def _check_digest(digest: Digest, computed: str) -> None:
    if computed != str(digest):
        raise DigestInvalid(
            "provided digest did not match uploaded content",
            detail={"expected": str(digest), "computed": computed},
        )
