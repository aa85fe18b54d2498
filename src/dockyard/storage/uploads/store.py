"""The upload store: an upload session is a row in `uploads` plus a temp object in storage
(`uploads/<id>/data`), so it survives restarts and continues on any node. It creates, finds, appends to,
verifies, lands, cancels and purges sessions; the states a session goes through are `states`, what a
request holds of one is `sessions`, and the package docstring says how the bytes travel."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, delete, insert, select, update

from dockyard.content.digest import CANONICAL_ALGORITHM, Digest, new_hasher
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.db.statements import DriverStatement
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
from dockyard.storage.uploads.held_writers import HeldWriters, Settled
from dockyard.storage.uploads.running_hashes import RunningHashes
from dockyard.storage.uploads.sessions import AppendSession, VerifiedUpload
from dockyard.storage.uploads.states import UploadPhase, UploadState, check_move

log = logging.getLogger("dockyard.storage.uploads")

# The statements every push runs, built once (building one costs more CPU than running it); those
# of its write transactions run on the driver connection (db.statements).
_UPLOAD_COLUMNS = ("id", "repository", "project", "owner", "size", "created_at", "updated_at")
_CREATE = DriverStatement(insert(Upload), column_keys=_UPLOAD_COLUMNS)
_BY_ID = select(
    Upload.id, Upload.repository, Upload.owner, Upload.size, Upload.created_at, Upload.storage_token
).where(Upload.id == bindparam("upload_id"))
_RECORD_SIZE = DriverStatement(
    update(Upload)
    .where(Upload.id == bindparam("upload_id"), Upload.size == bindparam("recorded_size"))
    .values(size=bindparam("new_size"), storage_token=bindparam("token"), updated_at=bindparam("now"))
)
_FORGET = DriverStatement(delete(Upload).where(Upload.id == bindparam("upload_id")))


class UploadStore:
    def __init__(self, db: Database, driver: StorageDriver) -> None:
        self._db = db
        self._driver = driver
        # Every PUT and PATCH finds its upload: a point read on the driver (db.lookups), not through
        # SQLAlchemy's execution path, which cost several times the read itself.
        self._by_id = db.lookups.prepare(_BY_ID)
        dialect = db.engine.dialect
        self._created_at = Upload.created_at.type.dialect_impl(dialect).result_processor(dialect, None)
        # Per-process caches, each behind its own lock: the running hash of each upload this process
        # wrote; the writer a request's last bytes went to, held for its commit; the uploads whose
        # bytes such a writer landed (no temp object left to delete).
        self._hashes = RunningHashes()
        self._held = HeldWriters()
        self._settled = Settled()

    # --- sessions -----------------------------------------------------------------------------
    def create(self, repository: str, owner: str | None = None, recorded: bool = True) -> UploadState:
        """A new session, open. `recorded=False`: no row, for a request that brings the whole blob and
        commits it (its client never learns the id, so nobody can find, continue or cancel it): its
        commit has no row to delete, and a crash leaves at most a temp object with no row, which
        `purge_stale` removes (the filesystem's unnamed files leave nothing)."""
        upload_id = new_upload_id()
        now = utcnow()
        if not recorded:
            return UploadState(upload_id, repository, 0, now, owner, recorded=False)
        # Not flushed (db.session): a row a power cut takes is an upload its client starts again.
        with self._db.write(durable=False) as connection:
            _CREATE.execute(
                connection,
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
        """The session (open: a row is one), if it belongs to this repository and owner: any other is
        BlobUploadUnknown, as if it did not exist (a caller may learn nothing of another's upload)."""
        upload_data_path(upload_id)  # refuses malformed ids before they reach the DB
        row = self._db.lookups.one(self._by_id, {"upload_id": upload_id})
        if row is None:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        found, row_repository, row_owner, size, created_at, token = row
        if row_repository != repository or row_owner != owner:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        if self._created_at is not None:
            created_at = self._created_at(created_at)
        return UploadState(found, repository, size, created_at, owner, token)

    def begin_append(self, state: UploadState, whole: bool = False) -> AppendSession:
        """Start writing a request's bytes at the end of an open upload: it is `receiving` until the
        session finishes. UploadBusy, with nothing touched, while another request writes to it;
        ChunkOutOfOrder if another one moved it on since `state` was read. `whole`: the request
        brings all of an empty upload's bytes and commits them (a monolithic PUT or POST)."""
        receiving = state.moved(UploadPhase.RECEIVING)
        if whole and state.size == 0:
            writer = self._driver.unlinked_writer(upload_data_path(state.id))
            if writer is not None:
                # Nobody sees these bytes until they land (or a cut-short body's are named at the
                # upload's path, if nobody else's are there): no lock, no directory of the upload's.
                # Bytes a failed commit of ours held are not recorded: they go (as `_repair` would
                # cut them off the temp object).
                self._held.drop(state.id)
                return AppendSession(self, receiving, writer, self._hashes.take(state.id, 0), UNLOCKED)
        lock = self._lock_upload(state.id)
        try:
            writer = self.open_writer(state, lock)
        except BaseException:
            lock.release()
            raise
        return AppendSession(self, receiving, writer, self._hashes.take(state.id, state.size), lock)

    def close_held(self, upload_id: str) -> None:
        """After a commit failed before it reached storage: keep the bytes of the last request's body
        for nobody (they were not recorded) and let the next request on the upload in."""
        self._held.close(upload_id)

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
        self._drop_local(upload_id)

    def discard(self, state: UploadState) -> None:
        """Drop a session with no row (`create(recorded=False)`) and its bytes."""
        self._drop_local(state.id)

    def forget(self, connection: Connection, state: UploadState) -> None:
        """Drop the upload's row, in the caller's transaction (the one that records the blob)."""
        check_move(state.id, state.phase, UploadPhase.COMMITTED)
        if not state.recorded:
            return
        result = _FORGET.execute(connection, {"upload_id": state.id})
        if result.rowcount != 1:
            raise BlobUploadUnknown("the upload was cancelled or purged while it was committed")

    def clean_up(self, state: UploadState) -> UploadState:
        """After the commit: drop the running hash and any temp leftovers. The session, committed."""
        committed = state.moved(UploadPhase.COMMITTED)
        self._hashes.forget(state.id)
        if not self._settled.pop(state.id):
            self._delete_temp(state.id)
        return committed

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
        check_move(state.id, state.phase, UploadPhase.LANDED)  # nothing is locked or read before this
        writer, lock = self._held.take(state.id, state.size)
        if lock is None:
            lock = self._lock_upload(state.id)
        try:
            computed = self._running_digest(state, digest.algorithm)
            if computed is None:  # this process missed chunks: make the temp object whole, hash it there
                if writer is not None:
                    writer.commit()
                elif state.size > 0:
                    self.open_writer(state, lock).commit()
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

    # --- what a session asks of the store -----------------------------------------------------
    def record_progress(self, state: UploadState, size: int, hasher: Any, token: str | None) -> UploadState:
        """Record a received chunk: the upload is open again at `size` bytes (writer state `token`).
        Not flushed (db.session): after a power cut that took it, the upload is at the size recorded
        before, and the bytes past it are cut off when it resumes (`_repair`); its client resumes from
        there, or starts again (its PUT fails: the bytes are not those of the digest)."""
        with self._db.write(durable=False) as connection:
            values = {"upload_id": state.id, "recorded_size": state.size, "new_size": size}
            result = _RECORD_SIZE.execute(connection, {**values, "token": token, "now": utcnow()})
        if result.rowcount != 1:
            # Cancelled, or another request appended concurrently: both mean the bytes are suspect.
            raise BlobUploadInvalid("upload changed while this chunk was written; restart the upload")
        state = state.moved(UploadPhase.OPEN, size=size, token=token)
        self._hashes.remember(state.id, state.size, hasher)
        return state

    def hold(self, state: UploadState, writer: FileWriter, lock: PathLock, hasher: Any) -> None:
        """Keep a request's last bytes (unrecorded), their writer and the upload's lock for its commit."""
        self._hashes.remember(state.id, state.size, hasher)
        self._held.hold(state.id, state.size, writer, lock)

    def open_writer(self, state: UploadState, lock: PathLock) -> FileWriter:
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

    def land_temp(self, state: UploadState, target: str) -> None:
        """Move the verified temp object to the content address (the caller holds the upload's lock)."""
        if state.size == 0:
            self._driver.put_content(target, b"")
            return
        self._driver.move(upload_data_path(state.id), target)

    def land_written(self, state: UploadState, writer: FileWriter | None, target: str) -> None:
        """Have the writer of the verified bytes land them at the content address (None: no byte was
        ever written): nothing is left at the upload's temp path."""
        if writer is None:
            self._driver.put_content(target, b"")
            return
        writer.commit_to(target)
        self._settled.add(state.id)

    def drop_written(self, state: UploadState, writer: FileWriter | None) -> None:
        """Drop the bytes of a writer that was to land them (the blob is stored already)."""
        if writer is not None:
            writer.cancel()
            self._settled.add(state.id)

    # --- internals ----------------------------------------------------------------------------
    def _lock_upload(self, upload_id: str) -> PathLock:
        self.close_held(upload_id)  # a failed commit of ours may still hold it
        lock = self._driver.try_lock(upload_path(upload_id))
        if lock is None:
            raise UploadBusy(detail={"uuid": upload_id})
        return lock

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

    def _drop_local(self, upload_id: str) -> None:
        """What this process and storage hold of a dropped upload: its running hash, a held writer, the
        temp object."""
        self._hashes.forget(upload_id)
        self._held.drop(upload_id)
        self._delete_temp(upload_id)

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
                self._drop_local(upload_id)
        return stale + orphans

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


class _Unlocked:
    """The lock of bytes nobody else can see (`StorageDriver.unlinked_writer`): nothing to hold."""

    exclusive = True

    def release(self) -> None:
        pass


UNLOCKED = _Unlocked()


def _owned_by(owner: str | None) -> ColumnElement[bool]:
    return Upload.owner.is_(None) if owner is None else Upload.owner == owner


def _check_digest(digest: Digest, computed: str) -> None:
    if computed != str(digest):
        raise DigestInvalid(
            "provided digest did not match uploaded content",
            detail={"expected": str(digest), "computed": computed},
        )
