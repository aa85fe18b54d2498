"""An upload session's states and the moves between them (storage.uploads.states): the table itself,
and the store and sessions keeping to it on a real database and driver (both databases)."""

from __future__ import annotations

from datetime import datetime
from itertools import product
from pathlib import Path

import pytest

from dockyard.content.digest import digest_of, parse_digest
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.db.session import Database
from dockyard.errors import BlobUploadInvalid
from dockyard.storage.driver import build_driver
from dockyard.storage.paths import blob_data_path, upload_data_path
from dockyard.storage.uploads import TRANSITIONS, UploadPhase, UploadState, UploadStateInvalid
from tests.support.registry import RegistryParts, registry_parts

OPEN, RECEIVING, LANDED = UploadPhase.OPEN, UploadPhase.RECEIVING, UploadPhase.LANDED
COMMITTED, CANCELLED = UploadPhase.COMMITTED, UploadPhase.CANCELLED

# Every move an upload may make, written out: the table in the code must say exactly this.
ALLOWED = {
    (OPEN, RECEIVING),  # a request starts writing its body
    (OPEN, LANDED),  # a commit with no body: the recorded bytes go to the content address
    (OPEN, COMMITTED),  # ... or the blob was there already
    (OPEN, CANCELLED),
    (RECEIVING, OPEN),  # the chunk is recorded
    (RECEIVING, LANDED),  # the body's last bytes, held for the commit, land
    (RECEIVING, COMMITTED),
    (RECEIVING, CANCELLED),  # a chunk failed half-way
    (LANDED, COMMITTED),  # the blob row recorded, the upload's row gone
    (LANDED, CANCELLED),  # the recording transaction refused (a full quota)
}
REPO = "team/app"

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases


def state(phase: UploadPhase) -> UploadState:
    return UploadState("a" * 32, REPO, 5, datetime(2026, 1, 1), phase=phase)


@pytest.mark.parametrize(("current", "new"), sorted(product(UploadPhase, UploadPhase), key=str))
def test_a_move_is_allowed_exactly_when_the_table_says(current: UploadPhase, new: UploadPhase) -> None:
    assert (new in TRANSITIONS[current]) == ((current, new) in ALLOWED)
    before = state(current)
    if (current, new) in ALLOWED:
        assert before.moved(new, size=9) == UploadState(before.id, REPO, 9, before.created_at, phase=new)
    else:
        with pytest.raises(UploadStateInvalid) as raised:
            before.moved(new)
        assert raised.value.detail == {"uuid": before.id, "state": current.value, "wanted": new.value}


def test_committed_and_cancelled_are_final() -> None:
    assert TRANSITIONS[COMMITTED] == TRANSITIONS[CANCELLED] == frozenset()


def test_an_invalid_move_is_the_specs_blob_upload_invalid() -> None:
    assert issubclass(UploadStateInvalid, BlobUploadInvalid)


# --- the store keeps to the table -----------------------------------------------------------------
@pytest.fixture
def parts(database: Database, tmp_path: Path) -> RegistryParts:
    driver = build_driver("filesystem", rootdirectory=tmp_path / "storage")
    return registry_parts(database, driver, InProcessChangeFeed())


def test_a_push_goes_open_receiving_open_receiving_landed_committed(parts: RegistryParts) -> None:
    started = parts.blob_uploads.start(REPO)
    assert started.phase is OPEN
    session = parts.blob_uploads.begin_append(started)
    assert session.state.phase is RECEIVING
    session.write(b"first ")
    chunked = session.finish()
    assert (chunked.phase, chunked.size) == (OPEN, 6)
    assert parts.blob_uploads.get(REPO, chunked.id).phase is OPEN  # as any node reads it back

    last = parts.blob_uploads.begin_append(chunked)
    last.write(b"and last")
    held = last.finish(record=False)  # the commit comes next
    assert (held.phase, held.size) == (RECEIVING, 14)
    digest = digest_of(b"first and last")
    verified = parts.uploads.verified(held, parse_digest(digest))
    verified.land(blob_data_path(digest))
    assert verified.state.phase is LANDED
    assert parts.uploads.clean_up(held).phase is COMMITTED


def test_an_upload_held_for_its_commit_takes_no_other_body(parts: RegistryParts) -> None:
    started = parts.blob_uploads.start(REPO)
    session = parts.blob_uploads.begin_append(started)
    session.write(b"body")
    held = session.finish(record=False)
    with pytest.raises(UploadStateInvalid):
        parts.blob_uploads.begin_append(held)
    parts.blob_uploads.commit(held, digest_of(b"body"))  # the commit it was held for still goes
    assert parts.blobs.open(digest_of(b"body")).read() == b"body"


def test_verified_bytes_land_once(parts: RegistryParts) -> None:
    started = parts.blob_uploads.start(REPO)
    session = parts.blob_uploads.begin_append(started)
    session.write(b"once")
    recorded = session.finish()
    digest = digest_of(b"once")
    verified = parts.uploads.verified(recorded, parse_digest(digest))
    verified.land(blob_data_path(digest))
    with pytest.raises(UploadStateInvalid):
        verified.land(blob_data_path(digest))
    with pytest.raises(UploadStateInvalid):
        verified.discard()
    with pytest.raises(UploadStateInvalid):  # it is landed: it cannot be verified again
        parts.uploads.verified(verified.state, parse_digest(digest))


def test_a_failed_chunk_cancels_the_upload(parts: RegistryParts, tmp_path: Path) -> None:
    started = parts.blob_uploads.start(REPO)
    session = parts.blob_uploads.begin_append(started)
    session.write(b"half")
    session.abort()
    assert session.state.phase is CANCELLED
    with pytest.raises(UploadStateInvalid):
        parts.blob_uploads.begin_append(session.state)
    with pytest.raises(UploadStateInvalid):
        parts.blob_uploads.commit(session.state, digest_of(b"half"))
    assert not (tmp_path / "storage" / upload_data_path(started.id)).exists()


def test_an_upload_in_one_request_shows_no_byte_until_it_lands(parts: RegistryParts, tmp_path: Path) -> None:
    """A monolithic PUT's body has no name (and no directory of its own) until its digest matched:
    nothing half-written is visible under storage, nothing is left to clean up."""
    started = parts.blob_uploads.start(REPO)
    session = parts.blob_uploads.begin_append(started, commits=True)
    session.write(b"one request")
    held = session.finish(record=False)
    storage = tmp_path / "storage"
    assert not (storage / "uploads").exists()
    digest = digest_of(b"one request")
    parts.blob_uploads.commit(held, digest)
    assert parts.blobs.open(digest).read() == b"one request"
    assert not (storage / "uploads").exists()


def test_a_body_cut_short_in_one_request_is_kept_for_a_resume(parts: RegistryParts) -> None:
    started = parts.blob_uploads.start(REPO)
    session = parts.blob_uploads.begin_append(started, commits=True)
    session.write(b"cut short, ")
    recorded = session.finish()  # the client went away: what arrived is kept
    assert parts.blob_uploads.get(REPO, started.id).size == 11
    resumed = parts.blob_uploads.begin_append(recorded)
    resumed.write(b"then resumed")
    digest = digest_of(b"cut short, then resumed")
    parts.blob_uploads.commit(resumed.finish(record=False), digest)
    assert parts.blobs.open(digest).read() == b"cut short, then resumed"


def test_a_commit_that_finds_the_blob_stored_drops_an_unnamed_body(
    parts: RegistryParts, tmp_path: Path
) -> None:
    for _ in range(2):
        session = parts.blob_uploads.begin_append(parts.blob_uploads.start(REPO), commits=True)
        session.write(b"twice")
        parts.blob_uploads.commit(session.finish(record=False), digest_of(b"twice"))
    assert parts.blobs.open(digest_of(b"twice")).read() == b"twice"
    assert not (tmp_path / "storage" / "uploads").exists()
