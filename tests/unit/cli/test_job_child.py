"""serve's job runner child starts once an HTTP worker can answer (until then the workers have the
node's cores to themselves), or after READY_WAIT whatever they do; stopped before, it never starts."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.cli import job_child
from dockyard.cli.job_child import JobWorkerProcess
from dockyard.lifecycle import expect_ready_workers


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> JobWorkerProcess:
    monkeypatch.setenv("_DOCKYARD_READY_FILE", "")  # monkeypatch restores it; expect_ready_workers sets it
    expect_ready_workers(tmp_path / "http-ready")
    process = JobWorkerProcess()
    process.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    return process


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_it_starts_once_a_worker_is_ready(worker: JobWorkerProcess, tmp_path: Path) -> None:
    worker.start()
    try:
        time.sleep(0.3)
        assert worker.process is None
        (tmp_path / "http-ready").touch()
        assert wait_for(lambda: worker.process is not None)
    finally:
        worker.stop()
    assert worker.process is not None and worker.process.poll() is not None


def test_it_starts_anyway_after_the_wait(worker: JobWorkerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_child, "READY_WAIT", 0.2)
    worker.start()
    try:
        assert wait_for(lambda: worker.process is not None)
    finally:
        worker.stop()


def test_stopped_before_any_worker_is_ready_it_never_starts(worker: JobWorkerProcess) -> None:
    worker.start()
    time.sleep(0.1)
    worker.stop()
    time.sleep(0.3)
    assert worker.process is None


# The job runner serve forks from itself (its first): the same wait, in the child, before it runs.
def forked(tmp_path: Path) -> JobWorkerProcess:
    def target() -> None:
        (tmp_path / "ran").write_text(Path("/proc/self/comm").read_text())
        time.sleep(60)

    return JobWorkerProcess(target)


def test_a_forked_one_runs_once_a_worker_is_ready(worker: JobWorkerProcess, tmp_path: Path) -> None:
    process = forked(tmp_path)
    process.start()
    try:
        assert process.process is not None  # forked at once, by start itself
        time.sleep(0.3)
        assert not (tmp_path / "ran").exists()
        (tmp_path / "http-ready").touch()
        assert wait_for(lambda: (tmp_path / "ran").exists())
        assert wait_for(lambda: (tmp_path / "ran").read_text() == "dockyard-jobs\n")  # its name in ps
    finally:
        process.stop()
    assert process.process is not None and process.process.poll() == -15  # SIGTERM, as stop sent


def test_a_forked_one_stopped_before_any_worker_is_ready_never_runs(
    worker: JobWorkerProcess, tmp_path: Path
) -> None:
    process = forked(tmp_path)
    process.start()
    time.sleep(0.1)
    process.stop()
    assert process.process is not None and process.process.poll() is not None
    (tmp_path / "http-ready").touch()
    time.sleep(0.3)
    assert not (tmp_path / "ran").exists()


def test_a_forked_one_that_dies_is_started_again_as_a_fresh_one(
    worker: JobWorkerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_child, "RESTART_PAUSE", 0.0)
    (tmp_path / "http-ready").touch()
    process = forked(tmp_path)
    process.command = worker.command
    process.start()
    try:
        first = process.process
        assert first is not None and wait_for(lambda: (tmp_path / "ran").exists())
        first.kill()
        assert wait_for(lambda: process.process is not first)
        assert process.process is not None and process.process.args == worker.command  # type: ignore[union-attr]
        assert first.poll() == -9
    finally:
        process.stop()
