"""Files in the data directory: the memory-mapped run files are allocated (never sparse, so a full disk
cannot SIGBUS a worker), and a process that finds no room for its own files serves on."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.server import _allocate_shared_files
from dockyard.config.settings import Settings
from dockyard.coordination.feeds import LocalChangeFeed
from dockyard.coordination.interfaces import Topic
from dockyard.datadir import InsecureDataDirectory, secure
from tests.support.tmpfs import fill, small_filesystem

pytestmark = pytest.mark.db_independent


def allocated(path: Path) -> bool:
    """Every byte of the file has a block: no hole to fault on."""
    info = path.stat()
    return info.st_size > 0 and info.st_blocks * 512 >= info.st_size


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", "4m") as mounted:
        yield mounted


# Granian's way: the parent switches to multiprocess metrics, then forks workers that build their apps.
METRICS_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from pathlib import Path
    from dockyard.api.drain import DrainState
    from dockyard.observability.metrics import JobMetrics, Metrics, prepare_multiprocess, render

    run = Path(sys.argv[1])
    prepare_multiprocess(run / "metrics")
    if len(sys.argv) > 2:  # the disk fills up after the start, before the workers build their apps
        from tests.support.tmpfs import fill
        fill(Path(sys.argv[2]))

    def worker():
        metrics = Metrics()
        # Enough label sets to grow the file past its first 64 KiB.
        for route in range(400):
            metrics.observe_request(f"/route/{route}", "GET", 200, 0.002, 0, 10)
        metrics.flush()
        JobMetrics().finished.labels("gc", "ok").inc()
        drain = DrainState(run / "drain")
        drain.add(1)
        drain.add(-1)

    process = multiprocessing.get_context("fork").Process(target=worker)
    process.start()
    process.join()
    sys.stdout.write(f"exit {process.exitcode}\\n")
    sys.stdout.write(render()[0].decode())
    """
)


def run_metrics_script(*args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", METRICS_SCRIPT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],  # for `tests.support`
    )


def test_every_mapped_run_file_is_allocated(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_metrics_script(run)
    assert "exit 0" in result.stdout, result.stderr
    assert 'http_requests_total{method="GET",route="/route/399",status="200"} 1.0' in result.stdout
    LocalChangeFeed(run / "changes").bump(Topic.MANIFESTS)
    files = [path for path in run.rglob("*") if path.is_file()]
    assert {path.parent.name for path in files} >= {"metrics", "drain", "run"}
    assert any(path.stat().st_size > 1 << 16 for path in files)  # a metrics file that grew
    for path in files:
        assert allocated(path), f"{path} is sparse: {path.stat()}"


def test_a_sparse_change_feed_of_an_older_version_is_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "changes"
    with open(path, "wb") as file:
        file.truncate(8 * len(Topic))  # what the old code made: all hole
    assert not allocated(path)
    LocalChangeFeed(path)
    assert allocated(path)


def test_on_a_full_disk_a_worker_serves_on_without_its_files(disk: Path) -> None:
    """Before: the worker died of SIGBUS (exit -7) writing its metrics into a hole."""
    result = run_metrics_script(disk / "run", disk / "filler")
    assert "exit 0" in result.stdout, result.stdout + result.stderr
    assert "metrics stay in memory" in result.stderr
    assert "not counted for the drain" in result.stderr


def test_serve_stops_with_a_message_when_the_shared_files_cannot_be_allocated(disk: Path) -> None:
    settings = Settings(datadir=disk / "data")
    (disk / "data" / "run").mkdir(parents=True)
    fill(disk / "filler")
    with pytest.raises(SystemExit) as stopped:
        _allocate_shared_files(settings)
    assert "no room for" in str(stopped.value) and "free space" in str(stopped.value)
    os.unlink(disk / "filler")
    _allocate_shared_files(settings)
    assert allocated(disk / "data" / "run" / "changes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_is_created_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        assert secure(tmp_path / "new" / "data") == []
    finally:
        os.umask(previous)
    assert mode(tmp_path / "new" / "data") == 0o700


def test_an_open_data_directory_and_its_secrets_are_made_private(tmp_path: Path) -> None:
    datadir, storage = tmp_path / "data", tmp_path / "elsewhere" / "storage"
    (datadir / "run").mkdir(parents=True)
    storage.mkdir(parents=True)
    database = tmp_path / "elsewhere" / "registry.db"
    for path in (datadir / "dockyard.db", datadir / "dockyard.db-wal", datadir / "admin-password", database):
        path.write_text("secret")
        path.chmod(0o644)
    for path in (datadir, datadir / "run", storage):
        path.chmod(0o755)
    (datadir / "notes.txt").write_text("not ours")
    (datadir / "notes.txt").chmod(0o644)

    changed = secure(datadir, [storage], [database, tmp_path / "elsewhere" / "registry.db-wal"])
    assert len(changed) == 7 and f"{datadir}: 0755 -> 0700" in changed
    for path in (datadir, datadir / "run", storage):
        assert mode(path) == 0o700
    for path in (datadir / "dockyard.db", datadir / "dockyard.db-wal", datadir / "admin-password", database):
        assert mode(path) == 0o600
    assert mode(datadir / "notes.txt") == 0o644  # unreachable now anyway; not walked, not touched
    assert secure(datadir, [storage], [database]) == []


def test_a_data_directory_others_may_read_that_cannot_be_changed_is_refused(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", "1m", "mode=0755") as disk:
        (disk / "data").mkdir(mode=0o750)
        (disk / "data").chmod(0o750)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            with pytest.raises(InsecureDataDirectory) as refused:
                secure(disk)
            assert "0755" in str(refused.value) and "chmod 700" in str(refused.value)
            # Group access only (a volume mounted with a group, as Kubernetes' fsGroup does): a warning.
            assert secure(disk / "data") == []
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
