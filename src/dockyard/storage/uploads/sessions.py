"""What one request holds of an upload session: `AppendSession` while its body streams in (state
`receiving`), `VerifiedUpload` while its commit places the verified bytes (on to `landed`). Both hold
the upload's lock until they are done, and call the store only through its public methods."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dockyard.content.digest import CANONICAL_ALGORITHM
from dockyard.storage.driver.base import FileWriter, PathLock
from dockyard.storage.uploads.states import UploadPhase, UploadState, UploadStateInvalid

if TYPE_CHECKING:
    from dockyard.storage.uploads.store import UploadStore


class AppendSession:
    """Appends one request's bytes to an upload, hashing as it writes. Not thread-safe: one
    writer thread at a time (the API feeds it sequentially)."""

    def __init__(
        self, store: UploadStore, state: UploadState, writer: FileWriter, hasher: Any, lock: PathLock
    ) -> None:
        self._store = store
        self.state = state  # receiving
        self._writer = writer
        self._hasher = hasher
        self._lock = lock
        self.received = 0

    @property
    def size(self) -> int:
        return self.state.size + self.received

    def write(self, data: bytes) -> None:
        # The hot path of every push: no state check here (a finished writer refuses to write).
        if self._hasher is not None:
            self._hasher.update(data)
        self._writer.write(data)
        self.received += len(data)

    def digest(self, algorithm: str) -> str | None:
        """The digest of the upload's bytes so far, from the running hash; None when that hash is of
        another algorithm, or missing (this process did not write the upload's earlier bytes)."""
        if self._hasher is None or algorithm != CANONICAL_ALGORITHM:
            return None
        return f"{algorithm}:{self._hasher.hexdigest()}"  # hexdigest leaves the hash going

    def finish(self, record: bool = True) -> UploadState:
        """Keep the bytes and record the new size: the upload is open again. With record=False the
        caller commits the upload next, in a transaction that removes its row, so the size update would
        be a wasted write: the upload stays `receiving` and the writer stays open, with the lock, for
        that commit (`UploadStore.verified`)."""
        if not record:
            state = replace(self.state, size=self.size)
            self._store.hold(state, self._writer, self._lock, self._hasher)  # the lock goes along
            return state
        try:
            self._writer.close()
            return self._store.record_progress(self.state, self.size, self._hasher, self._writer.fingerprint)
        finally:
            self._lock.release()  # only now: the bytes past the recorded size are no longer ours

    def abort(self) -> None:
        """A chunk failed half-way: the upload can no longer be trusted, so it is dropped."""
        try:
            self._writer.cancel()
            if self.state.recorded:
                self._store.cancel(self.state.id, self.state.repository, self.state.owner)
            else:
                self._store.discard(self.state)
            self.state = self.state.moved(UploadPhase.CANCELLED)
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
        self.state = state  # open or receiving; landed once `land` placed the bytes
        self._writer = writer
        self._in_temp = in_temp  # the bytes were made whole in the temp object (and hashed there)
        self._lock = lock  # the upload's, held until the bytes landed or were dropped
        self._done = False

    def land(self, target: str) -> None:
        self._check_not_done()
        landed = self.state.moved(UploadPhase.LANDED)
        try:
            if self._in_temp:
                self._store.land_temp(landed, target)
            else:
                self._store.land_written(landed, self._take_writer(), target)
        finally:
            self._lock.release()
        # Only now: after a failed landing the caller still discards what is left of the bytes.
        self.state, self._done = landed, True

    def discard(self) -> None:
        """Drop the bytes (the blob is stored already). The temp object, if any, goes with the
        upload's clean-up; a held or resumable multipart upload is aborted here."""
        self._check_not_done()
        self._done = True
        try:
            if not self._in_temp:
                self._store.drop_written(self.state, self._take_writer())
        finally:
            self._lock.release()

    def _check_not_done(self) -> None:
        """Once: after a `land` or `discard` the bytes and the lock are no longer ours."""
        if self._done:
            raise UploadStateInvalid(
                "the upload's bytes were landed or dropped already",
                detail={"uuid": self.state.id, "state": self.state.phase.value},
            )

    def _take_writer(self) -> FileWriter | None:
        writer, self._writer = self._writer, None
        if writer is None and self.state.size > 0:
            writer = self._store.open_writer(self.state, self._lock)
        return writer
