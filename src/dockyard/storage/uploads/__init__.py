"""Upload sessions: a DB row plus a temp object in storage, so they survive restarts and nodes.

A session goes through the states of `states` (open, receiving, landed, committed, cancelled; the moves
between them are a table there, and a move it does not allow raises UploadStateInvalid). The HTTP layer
calls one service for all of it (registry.blob_uploads.BlobUploads), which runs the store here:

- `store.UploadStore`: creates, finds, appends to, verifies, lands, cancels and purges sessions.
- `sessions`: what one request holds of a session (`AppendSession` while its body streams in,
  `VerifiedUpload` while its commit places the bytes), with the upload's lock.
- `running_hashes`, `held_writers`: the store's per-process caches, each behind a lock of its own.

Bytes are hashed as they arrive. The running hash lives in this process only (hashlib state cannot be
saved); when a chunk or the commit lands on a process without it, the commit hashes the temp object
again instead, so correctness never depends on which process got which request.

When the request that brings the last bytes also commits (a monolithic POST, a PUT with the final
chunk), its writer is not closed: it is held for the commit, which checks the running hash and then has
the writer land its bytes straight at the content address (`FileWriter.commit_to`). On S3 that skips the
sidecar written and read back, the temp object, and the HEAD/COPY/DELETE of a move: a small blob is one
PutObject. A PATCH that leaves the upload unfinished still closes its writer to the sidecar, so any node
can resume it.

A request that brings all of an empty upload's bytes and commits them (a monolithic PUT or POST) writes
them, where the driver can, to a file with no name (`StorageDriver.unlinked_writer`: `O_TMPFILE` on a
local disk) that is named only at the content address, once the digest matched (and fsynced there
before the blob is recorded): no lock and no directory of the upload's, nothing left by a crash. If
its body is cut short, its bytes are named at the upload's path for a resume, unless another request's
bytes are there already (then they go, and the request fails).

Whatever else writes an upload's bytes (a chunk, until its new size is recorded; a commit, until the bytes
have landed) holds the storage driver's lock on the upload's directory (`StorageDriver.try_lock`): a
second request on the same upload meanwhile is refused (UploadBusy) instead of writing between its
bytes. So when the lock is exclusive (local disk, in-memory) and the temp object holds more bytes than
the row records, they are a chunk whose process died before it recorded them: they are cut off and the
upload resumes from the recorded size. (On S3 a killed chunk leaves no such bytes: its state is saved
when it closes, just before the size is recorded.) S3 has no lock, so requests on two nodes may each
write a state of the same upload: the row records which state (`FileWriter.fingerprint`) its size
belongs to, in the statement that records the size, and a resume or commit that finds another refuses
and drops the upload instead of trusting a running hash of other bytes.

A session's row and the sizes its chunks record are committed without the WAL flush on SQLite
(`Database.write(durable=False)`): no client was told they are kept. A power cut may leave a row behind
its temp object (its bytes past the recorded size are cut off as a killed chunk's are), ahead of it
(bytes the disk lost: the upload is dropped, BlobUploadInvalid), or no row at all (BlobUploadUnknown);
a commit verifies the digest of the bytes as recorded, so none becomes a blob of other bytes.
"""

from __future__ import annotations

from dockyard.storage.uploads.sessions import AppendSession, VerifiedUpload
from dockyard.storage.uploads.states import TRANSITIONS, UploadPhase, UploadState, UploadStateInvalid
from dockyard.storage.uploads.store import UploadStore

__all__ = [
    "TRANSITIONS",
    "AppendSession",
    "UploadPhase",
    "UploadState",
    "UploadStateInvalid",
    "UploadStore",
    "VerifiedUpload",
]
