"""After a push round the runner deletes the blobs it stored, and only those (bench.runner.forget_pushed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.runner import blob_files, forget_pushed
from bench.servers import Server

DOCKYARD_BLOBS = "data/storage/blobs/sha256"
DISTRIBUTION_BLOBS = "data/docker/registry/v2/blobs/sha256"


def server_in(workdir: Path) -> Server:
    process: Any = None  # never started: only its directories are used
    return Server("registry", "127.0.0.1", 0, process, workdir / "server.log", workdir=workdir)


def blob(workdir: Path, blobs: str, hex_digest: str, size: int) -> Path:
    path = workdir / blobs / hex_digest[:2] / hex_digest / "data"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * size)
    return path


def test_the_pushed_blobs_go_and_the_seeded_ones_and_the_rest_stay(tmp_path: Path) -> None:
    for blobs in (DOCKYARD_BLOBS, DISTRIBUTION_BLOBS):
        workdir = tmp_path / blobs.split("/")[1]
        server = server_in(workdir)
        seeded = blob(workdir, blobs, "aa" + "0" * 62, 10)
        database = workdir / "data" / "dockyard.db"
        database.write_bytes(b"rows")
        link = workdir / "data/docker/registry/v2/repositories/bench/app/_layers/sha256/bb/link"
        link.parent.mkdir(parents=True)
        link.write_text("sha256:bb")
        upload = workdir / "data/storage/uploads/0123/data"  # an upload in flight is not a blob
        upload.parent.mkdir(parents=True)
        upload.write_bytes(b"part")
        kept = blob_files(server)
        assert kept == {seeded}

        pushed = [blob(workdir, blobs, "bb" + str(n) * 62, 100) for n in range(3)]
        assert forget_pushed(server, kept) == 300
        assert not any(path.exists() or path.parent.exists() for path in pushed)
        assert all(path.exists() for path in (seeded, database, link, upload))
        assert forget_pushed(server, kept) == 0


def test_a_server_without_a_data_directory_has_nothing_to_forget(tmp_path: Path) -> None:
    server = server_in(tmp_path)  # dockyard on S3 keeps none of its blobs there
    assert blob_files(server) == set()
    assert forget_pushed(server, set()) == 0
