"""The first pull of a blob through the cache: one fetch from upstream, streamed to its client and into
storage at the same time (ProxyCache.open_blob opens it, holding the blob's fetch lock).

Two threads per fetch, joined by bounded queues:

    upstream --(fetch thread: receive)--+--> client queue --> the client's response
                                        +--> store queue --(store thread: hash + write)--> upload session

The fetch thread receives a chunk and hands the same bytes object (no copy) to the client's response and
to the store thread, and goes on receiving: the client gets each chunk as it arrives, while hashing and
writing run beside it instead of in between. Only the last chunk is held back: when the upstream has
sent everything, the fetch thread waits for the store thread to finish, checks the whole blob's size
and digest, and only then hands the last chunk over; then it commits the upload (the bytes made
durable, the blob recorded and linked, charged to the quota) and ends the response. So:

- a blob whose bytes do not match its digest, or that the upstream cut off or stalled on, or that
  storage failed to write before the digest was checked, records nothing, and its client's response
  fails short of its length: a client never gets a whole blob that was not verified;
- a commit that fails after the digest was checked (a full quota, a disk failing at the fsync, the
  database) records nothing either, but its client keeps the whole blob, which matched its digest: the
  failure is logged and counted (Outcome.NOT_STORED), and the next pull fetches the blob again.
Nothing unverified is ever recorded, and what is recorded was committed whole.

Memory stays bounded: at most CLIENT_CHUNKS + STORE_CHUNKS chunks (of up to CHUNK_SIZE) per fetch. A
slow client or slow storage holds the fetch back (backpressure: the upstream connection waits), it
never buffers more. A client that goes away does not stop the fetch: it runs to its end and the next
pull is served from storage. Storage that fails stops the fetch at once (nothing can be recorded).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from dockyard.content.digest import CANONICAL_ALGORITHM, new_hasher, parse_digest
from dockyard.coordination.interfaces import DistributedLock, LockLost
from dockyard.errors import DigestInvalid, SizeInvalid
from dockyard.proxy.interfaces import Outcome
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.upstream.interfaces import BlobStream

log = logging.getLogger("dockyard.proxy")

CHUNK_SIZE = 1 << 20  # bytes per chunk read from upstream (and per piece of the client's response)
CLIENT_CHUNKS = 8  # chunks the fetch may run ahead of its client
STORE_CHUNKS = 16  # chunks the fetch may run ahead of storage (hash + write)
WAIT_STEP = 0.2  # seconds between looks at whether the other side went away or failed, while blocked


class BlobFetch:
    """One blob streaming from upstream into an upload session, and to a client at the same time.

    The upload session is opened here, before the response starts, so a registry that cannot store
    (read-only, say) answers with its error rather than a broken response."""

    def __init__(
        self,
        uploads: BlobUploads,
        lock: DistributedLock,
        lock_ttl: float,
        stream: BlobStream,
        name: str,
        digest: str,
        where: str,
        observe: Callable[[str, Outcome], None],
    ) -> None:
        self.uploads = uploads
        self.lock = lock
        self.lock_ttl = lock_ttl
        self.stream = stream
        self.digest = digest
        self.where = where
        self.observe = observe
        self._to_client: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=CLIENT_CHUNKS)
        self._to_store: queue.Queue[bytes | None] = queue.Queue(maxsize=STORE_CHUNKS)
        self._detached = threading.Event()  # nobody reads the client queue any more
        self._stop_storing = threading.Event()  # the fetch failed: the store thread stops writing
        self._store_error: BaseException | None = None
        self._store_failed = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False  # the client was given the end (or the failure)
        self._done = False
        self._finished = False
        self._guard = threading.Lock()
        # The upload's running hash is SHA-256: a blob named by another algorithm gets a hash of its own.
        algorithm = parse_digest(digest).algorithm
        self._own_hash = None if algorithm == CANONICAL_ALGORITHM else new_hasher(algorithm)
        self.state = uploads.start(name)
        try:
            self.session = uploads.begin_append(self.state)
        except BaseException:
            uploads.drop(self.state)
            raise

    def take(self) -> list[bytes]:
        """The blob's next chunks for the client: at least one, waiting for it, and whatever else is
        queued behind it (so a client that fell behind catches up with one thread hop per batch, not
        per chunk); [] at the end. The last chunk only comes once the whole blob's size and digest are
        checked. Raises what broke the fetch."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._fetch, name="proxy-fetch", daemon=True)
            self._thread.start()
        if self._ended:
            return []
        batch: list[bytes] = []
        item = self._to_client.get()
        while True:
            if item is None:
                self._ended = True
                return batch
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            batch.append(item)
            if len(batch) >= CLIENT_CHUNKS:
                return batch
            try:
                item = self._to_client.get_nowait()
            except queue.Empty:
                return batch

    def close(self) -> None:
        """The response ended (or never started): a fetch that never started is dropped; a running one
        goes on without the client."""
        if self._thread is None:
            self._end(committed=False)
        self._detached.set()

    # --- the fetch thread ----------------------------------------------------------------------------
    def _fetch(self) -> None:
        store = threading.Thread(target=self._store, name="proxy-store", daemon=True)
        store.start()
        committed = False
        verified = False  # the whole blob matched its digest: the client may have all of it
        held: bytes | None = None
        try:
            extended = time.monotonic()
            for chunk in self.stream.chunks(CHUNK_SIZE):
                if not chunk:
                    continue
                if held is not None:
                    self._give_client(held)
                self._give_store(chunk)
                held = chunk
                if time.monotonic() - extended > self.lock_ttl / 4:
                    self.lock.extend()
                    extended = time.monotonic()
            self._give_store(None)  # the end: the store thread finishes what it has and stops
            store.join()
            self._check_store()
            self._verify()
            verified = True
            if held is not None:  # the client's answer is complete before the fsync and the record
                self._give_client(held)
            self._commit()
            committed = True
        except BaseException as error:
            failure: BaseException | None = error
        else:
            failure = None
        finally:
            self._stop_storing.set()
            with contextlib.suppress(queue.Full):
                self._to_store.put_nowait(None)  # wakes a store thread waiting for a chunk
            store.join()  # it writes no more before the session is dropped
            self._end(committed)  # before the client hears: its next pull finds the lock free
        if failure is None:
            self.observe("blob", Outcome.FETCHED)
            log.info("proxy: cached %s", self.where)
            self._give_client(None)
        elif verified:  # the client has every byte, checked: its answer ends well, the cache stays empty
            self.observe("blob", Outcome.NOT_STORED)
            log.error(
                "proxy: %s was served to its client but not stored (nothing recorded): %r",
                self.where,
                failure,
            )
            self._give_client(None)
        else:
            self.observe("blob", Outcome.FAILED)
            log.warning("proxy: fetching %s failed, nothing recorded: %s", self.where, failure)
            self._give_client(failure)

    def _verify(self) -> None:
        """The whole blob is what its digest (and the upstream's length) says, before its last chunk
        goes to the client."""
        received = self.session.size
        if self.stream.size is not None and received != self.stream.size:
            raise SizeInvalid(detail={"expected": self.stream.size, "received": received})
        computed: str | None
        if self._own_hash is not None:
            computed = f"{parse_digest(self.digest).algorithm}:{self._own_hash.hexdigest()}"
        else:
            computed = self.session.digest(CANONICAL_ALGORITHM)
        if computed != self.digest:
            raise DigestInvalid(
                "the upstream's bytes did not match the digest",
                detail={"expected": self.digest, "computed": computed},
            )

    def _commit(self) -> None:
        state = self.session.finish(record=False)
        self._finished = True  # the writer and its lock went to the upload store, for the commit
        try:
            self.uploads.commit(state, self.digest, self.stream.size)
        except BaseException:
            with contextlib.suppress(Exception):
                self.uploads.release(state)  # a writer still held for the commit
            self.uploads.drop(state)  # a bad digest or size, a full quota: nothing is kept
            raise

    def _give_client(self, item: bytes | BaseException | None) -> None:
        while not self._detached.is_set():
            try:
                self._to_client.put(item, timeout=WAIT_STEP)
                return
            except queue.Full:
                continue

    def _give_store(self, chunk: bytes | None) -> None:
        while True:
            self._check_store()
            try:
                self._to_store.put(chunk, timeout=WAIT_STEP)
                return
            except queue.Full:
                continue

    def _check_store(self) -> None:
        if self._store_failed.is_set():
            assert self._store_error is not None
            raise self._store_error

    # --- the store thread ----------------------------------------------------------------------------
    def _store(self) -> None:
        try:
            while not self._stop_storing.is_set():
                chunk = self._to_store.get()
                if chunk is None or self._stop_storing.is_set():
                    return
                if self._own_hash is not None:
                    self._own_hash.update(chunk)
                self.session.write(chunk)  # hashes, then writes
        except BaseException as error:
            self._store_error = error
            self._store_failed.set()

    def _end(self, committed: bool) -> None:
        """What was not committed is dropped; the upstream stream and the lock go."""
        with self._guard:
            if self._done:
                return
            self._done = True
        try:
            if not committed and not self._finished:
                with contextlib.suppress(Exception):
                    self.session.abort()  # drops the upload too
        finally:
            self.stream.close()
            release_quietly(self.lock)


def release_quietly(lock: DistributedLock) -> None:
    with contextlib.suppress(LockLost):
        lock.release()
