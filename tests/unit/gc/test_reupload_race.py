"""A blob uploaded again while the collector deletes it: the upload must pull, and no blob row may
outlive its bytes (docs/gc.md, "Why it is safe while the registry serves").

The registry and the collector run as two processes would: each on its own engine, on one database
and one storage directory. Hooks stop each side at the dangerous points: the upload just before its
record transaction (after it looked whether the blob is stored), the collector at its first storage
delete (after its batch committed) or inside its batch transaction (rows locked).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select

from dockyard.api.oci.errors import render_error
from dockyard.content import mediatypes
from dockyard.content.digest import digest_of
from dockyard.db.base import utcnow
from dockyard.db.engine import WRITE_OPTION, build_engine
from dockyard.db.session import Database
from dockyard.errors import BlobBeingDeleted, BlobUnknown, ManifestBlobUnknown
from dockyard.gc.blobs import BlobSweeper
from dockyard.gc.interfaces import GCOptions
from dockyard.gc.services import GarbageCollector
from dockyard.registry.models import ManifestReference
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.models import Blob
from dockyard.storage.paths import blob_data_path
from tests.support.databases import lock_waits
from tests.support.registry import registry_parts
from tests.unit.gc.fixtures import HOURS_LATER, Env

# Each test runs on SQLite and on PostgreSQL itself (tests/unit/gc/conftest.py's `db`).
pytestmark = pytest.mark.db_independent

WAIT = 60  # seconds a side waits for the other before the test gives up (never reached when it works)
OLD = "team/old"
AGAIN = "team/again"
OLD_BYTES = b"layer pushed long ago, used by nothing"


class PausingDriver:
    """The collector's storage: its deletes wait until the test lets them go."""

    def __init__(self, inner: FilesystemDriver) -> None:
        self._inner = inner
        self.deleting = threading.Event()
        self.go = threading.Event()

    def delete_files(self, paths: Sequence[str]) -> dict[str, Exception]:
        self.deleting.set()
        assert self.go.wait(WAIT)
        return self._inner.delete_files(paths)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Side(threading.Thread):
    """One side of the race, in its own thread; keeps what it returned or raised."""

    def __init__(self, action: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._action = action
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._action()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def gc_db(database_url: str) -> Iterator[Database]:
    """The collector's own engine on the same database, as a `dockyard worker` process has."""
    database = Database(build_engine(database_url))
    yield database
    database.dispose()


def _collector_paused_before_deleting(env: Env, gc_db: Database) -> tuple[PausingDriver, Side]:
    """A GC run in its own thread, held once its batch committed and before the bytes go
    (`driver.go.set()` lets it go on)."""
    driver = PausingDriver(env.driver)
    collector = Side(lambda: _collector(env, gc_db, driver).run(GCOptions()))
    collector.start()
    assert driver.deleting.wait(WAIT)
    return driver, collector


def _collector(env: Env, gc_db: Database, driver: Any) -> GarbageCollector:
    return GarbageCollector(gc_db, driver, env.feed, clock=lambda: utcnow() + HOURS_LATER)


class NextWrite:
    """The next write transaction on a database (an upload's record transaction, a PUT's): `reached`
    once it is about to begin, held there until `go` is set; `ended` once it has ended (committed or
    not): an upload then has recorded the blob, or found it being deleted and waits for the collector."""

    def __init__(self, db: Database, pause: bool) -> None:
        self.reached, self.go, self.ended = threading.Event(), threading.Event(), threading.Event()
        if not pause:
            self.go.set()
        write = db.write

        @contextlib.contextmanager
        def watched_write() -> Iterator[Connection]:
            first = not self.reached.is_set()
            if first:
                self.reached.set()
                assert self.go.wait(WAIT)
            try:
                with write() as connection:
                    yield connection
            finally:
                if first:
                    self.ended.set()

        db.write = watched_write  # type: ignore[method-assign]


def _pause_before_record(db: Database) -> NextWrite:
    """Stop the next write transaction on `db` before it begins, until `go`."""
    return NextWrite(db, pause=True)


def _start_upload(env: Env, data: bytes) -> Callable[[], int]:
    """An upload of data into AGAIN whose last request holds its writer for the commit (a monolithic
    push), ready to commit; returns the commit."""
    state = env.blob_uploads.start(AGAIN)
    session = env.uploads.begin_append(state)
    session.write(data)
    state = session.finish(record=False)
    return lambda: env.blob_uploads.commit(state, digest_of(data))


def _assert_no_row_without_its_bytes(env: Env) -> None:
    with env.db.read() as connection:
        rows = connection.execute(select(Blob.digest, Blob.deleting_since)).all()
    for digest, deleting_since in rows:
        assert deleting_since is None, f"a tombstone outlived the run: {digest}"
        assert digest_of(env.driver.get_content(blob_data_path(digest))) == digest, f"{digest} lost its bytes"


def _assert_pulls(env: Env, data: bytes) -> None:
    digest = digest_of(data)
    assert env.registry.blob_size(AGAIN, digest) == len(data)
    with env.blobs.open(digest) as stream:
        assert stream.read() == data


@pytest.fixture
def old_blob(env: Env) -> bytes:
    """A blob no manifest uses, old enough for the collector (its clock runs 3 h ahead)."""
    env.push_blob(OLD, OLD_BYTES)
    return OLD_BYTES


def test_collected_between_the_uploads_look_and_its_record(
    env: Env, gc_db: Database, old_blob: bytes
) -> None:
    # The upload sees the blob stored (so it keeps its bytes out of storage), then the collector
    # deletes the blob entirely, then the upload records it.
    commit = _start_upload(env, old_blob)
    record = _pause_before_record(env.db)
    upload = Side(commit)
    upload.start()
    assert record.reached.wait(WAIT)
    report = _collector(env, gc_db, env.driver).run(GCOptions())
    assert report.blobs_deleted == 1
    record.go.set()

    assert upload.outcome() == len(old_blob)
    _assert_pulls(env, old_blob)
    _assert_no_row_without_its_bytes(env)


def test_upload_records_while_the_collectors_file_delete_is_pending(
    env: Env, gc_db: Database, old_blob: bytes
) -> None:
    # The upload sees the blob stored; the collector commits its batch; the upload records; only
    # then does the collector delete the bytes.
    commit = _start_upload(env, old_blob)
    record = _pause_before_record(env.db)
    upload = Side(commit)
    upload.start()
    assert record.reached.wait(WAIT)
    driver, collector = _collector_paused_before_deleting(env, gc_db)
    record.go.set()
    assert record.ended.wait(WAIT)  # the upload recorded (or waits for the collector) before the bytes go
    driver.go.set()

    assert collector.outcome().blobs_deleted == 1
    assert upload.outcome() == len(old_blob)
    _assert_pulls(env, old_blob)
    _assert_no_row_without_its_bytes(env)


def test_upload_after_the_collectors_batch_committed_before_its_file_delete(
    env: Env, gc_db: Database, old_blob: bytes
) -> None:
    # The collector has committed its batch and is about to delete the bytes when the same bytes
    # are uploaded: they must not land only to be deleted under a fresh row.
    driver, collector = _collector_paused_before_deleting(env, gc_db)
    commit = _start_upload(env, old_blob)
    record = NextWrite(env.db, pause=False)
    upload = Side(commit)
    upload.start()
    assert record.ended.wait(WAIT)  # it found the blob being deleted, and waits for the collector
    driver.go.set()

    assert collector.outcome().blobs_deleted == 1
    assert upload.outcome() == len(old_blob)
    _assert_pulls(env, old_blob)
    _assert_no_row_without_its_bytes(env)


def test_a_blob_being_collected_is_unknown_to_pulls_and_mounts(
    env: Env, gc_db: Database, old_blob: bytes
) -> None:
    digest = digest_of(old_blob)
    assert env.registry.blob_size(OLD, digest) == len(old_blob)  # HEAD; remembered in the cache
    assert env.registry.cached_blob_size(OLD, digest) == len(old_blob)
    driver, collector = _collector_paused_before_deleting(env, gc_db)

    assert env.registry.cached_blob_size(OLD, digest) is None
    with pytest.raises(BlobUnknown):  # HEAD and GET: 404 BLOB_UNKNOWN
        env.registry.blob_size(OLD, digest)
    assert env.registry.mount_blob("team/new", digest, None) is None  # automatic mount: upload instead
    assert env.registry.mount_blob("team/new", digest, OLD) is None
    driver.go.set()
    collector.outcome()
    assert digest not in env.blob_digests()
    _assert_no_row_without_its_bytes(env)


def test_a_manifest_put_waiting_on_the_collectors_lock_finds_the_blob_gone(
    env: Env, gc_db: Database, old_blob: bytes
) -> None:
    # PostgreSQL: the PUT's share lock waits for the collector's batch, then reads the row it
    # tombstoned (the repository link it joined is from before); SQLite: the PUT waits to write.
    digest = digest_of(old_blob)
    locked, go = threading.Event(), threading.Event()

    def after_execute(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The batch transaction's first query: the one locking the rows (after a SET of its own).
        writing = connection.get_execution_options().get(WRITE_OPTION)
        if writing and not statement.startswith(("BEGIN", "SET")) and not locked.is_set():
            locked.set()
            assert go.wait(WAIT)

    event.listen(gc_db.engine, "after_cursor_execute", after_execute)
    collector = Side(lambda: _collector(env, gc_db, env.driver).run(GCOptions()))
    collector.start()
    assert locked.wait(WAIT)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": digest, "size": len(old_blob)},
            "layers": [],
        }
    ).encode()
    asked = NextWrite(env.db, pause=False)
    put = Side(lambda: env.registry.put_manifest(OLD, "latest", body, mediatypes.OCI_MANIFEST))
    put.start()
    _until_waiting_for_the_collector(env, asked, put)
    go.set()

    assert collector.outcome().blobs_deleted == 1
    with pytest.raises(ManifestBlobUnknown):
        put.outcome()
    with env.db.read() as connection:
        assert connection.scalar(select(func.count()).select_from(ManifestReference)) == 0
    _assert_no_row_without_its_bytes(env)


def _until_waiting_for_the_collector(env: Env, asked: NextWrite, put: Side) -> None:
    """Until the PUT is in its transaction, waiting for the collector's: on PostgreSQL for a row lock;
    on SQLite once it asks to write (its BEGIN IMMEDIATE waits: the collector's holds the only write
    lock). A PUT that does not wait ends instead."""
    assert asked.reached.wait(WAIT)
    if env.db.dialect != "postgresql":
        return
    deadline = time.monotonic() + WAIT
    while put.is_alive() and not lock_waits(env.db):
        assert time.monotonic() < deadline, "the PUT neither waits for the collector nor ends"
        time.sleep(0.01)


def _tombstone_as_a_crashed_run_left_it(env: Env, gc_db: Database, digest: str) -> None:
    """The collector's batch committed, and its process died before deleting anything."""
    sweeper = BlobSweeper(gc_db, env.driver)
    cutoff = utcnow() + HOURS_LATER - GCOptions().min_age
    assert sweeper.tombstone_rows(cutoff, [digest]) == [(digest, len(OLD_BYTES))]


def test_an_upload_held_up_by_a_crashed_run_answers_try_again_until_the_next_run(
    env: Env, gc_db: Database, old_blob: bytes
) -> None:
    digest = digest_of(old_blob)
    _tombstone_as_a_crashed_run_left_it(env, gc_db, digest)
    impatient = {"wait_for_delete": 0.2}
    env.parts = registry_parts(env.db, env.driver, env.feed, blob_options=impatient)

    with pytest.raises(BlobBeingDeleted) as refused:
        _start_upload(env, old_blob)()
    response = render_error(refused.value)  # what /v2 answers: retry later
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert json.loads(bytes(response.body))["errors"][0]["code"] == "UNAVAILABLE"
    with pytest.raises(BlobUnknown):
        env.registry.blob_size(OLD, digest)

    report = _collector(env, gc_db, env.driver).run(GCOptions())  # finishes the tombstone first
    assert report.blobs_deleted == 0
    assert digest not in env.blob_digests() | env.stored_digests()
    assert _start_upload(env, old_blob)() == len(old_blob)  # the client's retry
    _assert_pulls(env, old_blob)
    _assert_no_row_without_its_bytes(env)


def test_uploads_racing_collector_runs_never_leave_a_row_without_its_bytes(env: Env, gc_db: Database) -> None:
    # No window at all: the collector wants every blob the moment its upload is recorded, so every
    # upload races a sweep of its own digest (a few digests, uploaded again and again).
    layers = [f"layer {n}".encode() for n in range(4)]
    collector = GarbageCollector(gc_db, env.driver, env.feed)
    done = threading.Event()
    outcomes = {"acknowledged": 0, "try again": 0}

    def upload() -> None:
        try:
            for round_number in range(30):
                data = layers[round_number % len(layers)]
                try:
                    assert _start_upload(env, data)() == len(data)
                    outcomes["acknowledged"] += 1
                except BlobBeingDeleted:
                    outcomes["try again"] += 1  # collected within its own commit (a window of zero)
        finally:
            done.set()

    def collect() -> None:
        while not done.is_set():
            collector.run(GCOptions(min_age=GCOptions().min_age * 0, batch_size=2))

    uploader, sweeper = Side(upload), Side(collect)
    uploader.start()
    sweeper.start()
    uploader.outcome()
    sweeper.outcome()
    assert outcomes["acknowledged"] + outcomes["try again"] == 30
    _assert_no_row_without_its_bytes(env)
    with env.db.read() as connection:
        linked = connection.execute(
            select(Blob.digest).where(Blob.digest.in_([digest_of(x) for x in layers]))
        )
        for (digest,) in linked:  # what is still recorded pulls
            data = next(x for x in layers if digest_of(x) == digest)
            with env.blobs.open(digest) as stream:
                assert stream.read() == data
