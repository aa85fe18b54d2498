"""A power cut on SQLite keeps the WAL as of its last flush (db.wal_flush): what a client was told is
kept (a blob's commit) is there; an upload session's bookkeeping since then (its POST, the sizes its
PATCHes recorded: `Database.write(durable=False)`) may be gone. What the client meets then is consistent:
the upload at the size last flushed (bytes past it in the temp file are cut off when it resumes), no
upload at all (BLOB_UPLOAD_UNKNOWN), or an upload whose bytes the disk lost (BLOB_UPLOAD_INVALID, the
upload dropped); each an OCI answer a client restarts or resumes from, never a blob of other bytes.

The power cut: each WAL flush of the app copies the database and its WAL as they are then (what the
disk holds once the flush returned), until the power goes; the app stops, the copies replace the files,
and the app starts again on them, on storage as it was (a chunk's bytes may have reached the disk or
not: both are tried)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dockyard.audit.services import AuditLog
from dockyard.db import wal_flush
from tests.support.inprocess import in_process_client
from tests.support.ociclient import OCIClient, assert_error, describe, digest_of

MiB = 1024 * 1024
REPO = "power/cut"


class Disk:
    """The database's files as the disk holds them: copied at each WAL flush until the power goes."""

    def __init__(self, workdir: Path) -> None:
        self.database = workdir / "data" / "dockyard.db"
        self.kept = workdir / "on-disk"
        self.kept.mkdir()
        self.flushes = 0
        self.powered = True

    def flushed(self) -> None:
        if not self.powered:  # the app's writes of its last moments (its shutdown's) never got there
            return
        self.flushes += 1
        for suffix in ("", "-wal"):
            source = Path(f"{self.database}{suffix}")
            if source.exists():
                shutil.copyfile(source, self.kept / source.name)

    def power_off(self) -> None:
        self.powered = False

    def power_cut(self) -> None:
        """The app has stopped: its database files become what the disk held when the power went."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)
            kept = self.kept / f"{self.database.name}{suffix}"
            if kept.exists():
                shutil.copyfile(kept, f"{self.database}{suffix}")


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Disk:
    disk = Disk(tmp_path)
    real = wal_flush.flush_file
    # The audit log's writer thread would write the pushes' events (a flushed commit) at moments of its
    # own, and with them every upload's bookkeeping before: its events wait for its close instead,
    # after the power went.
    monkeypatch.setattr(AuditLog, "_start_writer", lambda self: None)

    def flush_and_copy(path: str) -> None:
        real(path)
        disk.flushed()

    monkeypatch.setattr(wal_flush, "flush_file", flush_and_copy)
    return disk


def config(tmp_path: Path) -> dict[str, Any]:
    # SQLite whatever DOCKYARD_TEST_DB says (the WAL is what a power cut cuts), flushed as shipped.
    url = f"sqlite:///{tmp_path / 'data' / 'dockyard.db'}"
    return {"auth": {"enabled": False}, "database": {"url": url, "flush_commits": True}}


def test_after_a_power_cut_uploads_answer_as_of_the_last_flush(tmp_path: Path, disk: Disk) -> None:
    data = bytes(range(256)) * (3 * MiB // 256)
    pushed = b"a blob pushed in full" * 1000
    with in_process_client(tmp_path, config(tmp_path)) as http:
        oci = OCIClient(http)
        resumed = oci.upload_location(REPO)  # a row, and 1 MiB recorded: flushed by the commit below
        assert oci.patch_chunk(resumed, data[:MiB], start=0).status_code == 202
        lost = oci.upload_location(REPO)  # its bytes will not be on the disk after the cut
        assert oci.patch_chunk(lost, data[:MiB], start=0).status_code == 202
        flushes = disk.flushes
        oci.push_blob(REPO, pushed)  # POST + PUT: told it is kept, so its commit flushes
        assert disk.flushes == flushes + 1
        # Bookkeeping after the last flush: answered, not flushed.
        patched = oci.patch_chunk(resumed, data[MiB : 2 * MiB], start=MiB)
        assert patched.status_code == 202 and patched.headers["Range"] == f"0-{2 * MiB - 1}"
        unknown = oci.upload_location(REPO)
        assert disk.flushes == flushes + 1
        disk.power_off()
    disk.power_cut()
    lost_data = tmp_path / "data" / "storage" / "uploads" / lost.rsplit("/", 1)[1] / "data"
    with lost_data.open("r+b") as file:  # the disk kept half of its chunk
        file.truncate(MiB // 2)

    with in_process_client(tmp_path, config(tmp_path)) as http:
        oci = OCIClient(http)
        kept = http.get(f"/v2/{REPO}/blobs/{digest_of(pushed)}")
        assert kept.status_code == 200 and kept.content == pushed
        # The size last flushed wins; the temp file's later bytes are not the upload's.
        status = http.get(resumed)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{MiB - 1}", describe(status)
        stale = oci.patch_chunk(resumed, data[2 * MiB :], start=2 * MiB)
        assert_error(stale, 416, "BLOB_UPLOAD_INVALID")  # "chunk must start at offset 1048576"
        again = oci.patch_chunk(resumed, data[MiB:], start=MiB)
        assert again.status_code == 202 and again.headers["Range"] == f"0-{len(data) - 1}", describe(again)
        assert oci.finish_upload(resumed, digest_of(data)).status_code == 201
        assert http.get(f"/v2/{REPO}/blobs/{digest_of(data)}").content == data
        # An upload whose POST was not flushed: unknown, the client starts again.
        assert_error(http.get(unknown), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(oci.patch_chunk(unknown, b"more", start=0), 404, "BLOB_UPLOAD_UNKNOWN")
        # An upload whose recorded bytes the disk lost: refused and dropped, the client starts again.
        assert_error(oci.patch_chunk(lost, data[MiB : 2 * MiB], start=MiB), 400, "BLOB_UPLOAD_INVALID")
        assert_error(http.get(lost), 404, "BLOB_UPLOAD_UNKNOWN")


def test_a_final_put_after_a_power_cut_lost_its_last_chunk(tmp_path: Path, disk: Disk) -> None:
    """The client sent every chunk and commits; the cut lost the last chunk's recorded size: the
    upload's bytes as recorded are not the blob, so the PUT fails (DIGEST_INVALID) and the upload goes:
    the client pushes the blob again. Nothing is stored under the digest."""
    data = bytes(range(256)) * (2 * MiB // 256)
    with in_process_client(tmp_path, config(tmp_path)) as http:
        oci = OCIClient(http)
        location = oci.upload_location(REPO)
        assert oci.patch_chunk(location, data[:MiB], start=0).status_code == 202
        oci.push_blob(REPO, b"another push's commit flushes the WAL")
        assert oci.patch_chunk(location, data[MiB:], start=MiB).status_code == 202
        disk.power_off()
    disk.power_cut()
    with in_process_client(tmp_path, config(tmp_path)) as http:
        oci = OCIClient(http)
        assert_error(oci.finish_upload(location, digest_of(data)), 400, "DIGEST_INVALID")
        assert http.head(f"/v2/{REPO}/blobs/{digest_of(data)}").status_code == 404
        assert_error(http.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
        assert oci.finish_upload(oci.upload_location(REPO), digest_of(data), data).status_code == 201
