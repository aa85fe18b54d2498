"""`dockyard serve` with its job runner stops within seconds of SIGTERM, idle or still starting: each
`docker stop`, rolling restart or scale-in waits on it.

Before: Granian forks its HTTP workers after serve's drain handler is in place, so a worker still
loading the app took serve's SIGTERM handler for its own, ignored the signal, and serve waited Granian's
10 s kill timeout before it stopped the job runner (every stop of a server that had just started).
Then a SIGTERM that landed while a worker's uvloop did not listen yet (app/loop_signals.py) was lost the
same way (now and then in CI; every time under strace below).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.test_kill_serve import children_of, running
from tests.support.processes import stop_process
from tests.support.server import DOCKYARD, database_url_factory, free_port, require_tool, start_server
from tests.support.timeouts import HTTP_TIMEOUT

STOPS_WITHIN = 5.0  # seconds: idle, a stop takes well under one; Granian's kill timeout is 10


def stop_seconds(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


def test_an_idle_server_with_its_job_runner_stops_at_once(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"http": {"workers": 2}, "jobs": {"run_in_serve": True}})
    try:
        assert httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT).status_code == 200
        deadline = time.monotonic() + 60
        while "job runner on" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = stop_seconds(server.process)
        assert server.process.returncode == 0, server.log()
        assert seconds < STOPS_WITHIN, f"took {seconds:.1f}s to stop:\n{server.log()}"
        assert "stopping the job runner" in server.log()
    finally:
        server.stop()


def serve_config(tmp_path: Path, run_jobs: bool) -> Path:
    datadir = tmp_path / "data"
    config = {
        "datadir": str(datadir),
        "http": {"addr": f"127.0.0.1:{free_port()}", "workers": 2},
        "auth": {"enabled": False},
        "jobs": {"run_in_serve": run_jobs},
    }
    if database_url_factory is not None:
        config["database"] = {"url": database_url_factory(str(datadir))}
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    return config_path


def start(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=os.environ, start_new_session=True
        )


def test_a_server_stopped_while_its_workers_start_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM as soon as the HTTP workers are forked, while they load the app (about a second, more
    on a busy machine)."""
    log_path = tmp_path / "server.log"
    # The binary: the test signals the `serve` process and checks how it stops.
    process = start([DOCKYARD, "serve", "--config", str(serve_config(tmp_path, run_jobs=True))], log_path)
    try:
        deadline = time.monotonic() + 60
        # The job runner and the two HTTP workers (the start-up child is gone before they start).
        while len(children_of(process.pid)) < 3 and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.01)
        seconds = stop_seconds(process)
        assert seconds < STOPS_WITHIN, f"took {seconds:.1f}s to stop:\n{log_path.read_text()}"
    finally:
        stop_process(process)


HELD = 2  # seconds strace holds each worker where its loop is about to listen
# A worker's socketpairs as it starts (Granian 2.8.9 on uvloop; the first steps of each run of uvloop
# make one): 1st as the lifespan's run starts, 2nd in Granian's serve(), 3rd as the serving run starts.
WINDOWS = {"before-the-lifespan": (1, False), "as-serving-starts": (3, True)}
SPAWNED = re.compile(r"Spawning worker-(\d+) with PID: (\d+)\b")  # Granian's line for each worker


def start_held(tmp_path: Path, log: Path, syscall: str, seconds: int, nth: int) -> subprocess.Popen[bytes]:
    """serve (no job runner) under strace, which holds each of its processes and threads `seconds` at
    its `nth` call of `syscall`."""
    strace = require_tool("strace")
    trace = [strace, "-f", "-qq", "-o", os.devnull, "--seccomp-bpf", "-e", f"trace={syscall}"]
    trace += ["-e", f"inject={syscall}:delay_enter={seconds}s:when={nth}", "--"]
    config_path = serve_config(tmp_path, run_jobs=False)
    return start([*trace, DOCKYARD, "serve", "--config", str(config_path)], log)


def held(pid: int) -> bool:
    """Stopped by its tracer ('t'), as strace holds it (seen twice: not a tracer's passing stop)."""
    for look in range(2):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] != "t":
            return False
        if look == 0:
            time.sleep(0.05)
    return True


@pytest.mark.parametrize("window", WINDOWS)
def test_a_stop_that_lands_as_a_workers_loop_starts_stops_it(tmp_path: Path, window: str) -> None:
    """Granian runs a worker's uvloop twice as it starts (the lifespan, then serving), and uvloop hears
    signals only while its loop runs. strace holds each worker just before its loop listens (uvloop's
    first step), serve is stopped meanwhile: the worker's SIGTERM lands there, every time. Before
    app/loop_signals.py the worker served on and Granian killed it 10 s later."""
    nth, served = WINDOWS[window]
    log_path = tmp_path / "server.log"
    process = start_held(tmp_path, log_path, "socketpair", HELD, nth)
    serve: int | None = None
    try:
        deadline = time.monotonic() + 60
        stopped: int | None = None
        spawned: dict[int, str] = {}
        while stopped is None:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
            serve = next(iter(children_of(process.pid)), None)  # strace's only child
            # Granian's workers only, once serve has logged their pids: not the start-up child, and
            # not a worker held before its "Spawning" line was written (CI saw that once).
            spawned = {int(pid): number for number, pid in SPAWNED.findall(log_path.read_text())}
            workers = children_of(serve) & spawned.keys() if serve is not None else set()
            stopped = next((worker for worker in workers if held(worker)), None)
        assert serve is not None
        log = log_path.read_text()
        assert (f"Started worker-{spawned[stopped]}\n" in log) is served, f"not held where meant to:\n{log}"
        started = time.monotonic()
        os.kill(serve, signal.SIGTERM)
        process.wait(timeout=30)
        seconds = time.monotonic() - started
        assert "refused to gracefully stop" not in log_path.read_text(), log_path.read_text()
        assert seconds < HELD + STOPS_WITHIN, f"took {seconds:.1f}s to stop:\n{log_path.read_text()}"
    finally:
        stop_process(process)
        if serve is not None:  # strace's child outlives strace when the test fails before the stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(serve, signal.SIGKILL)  # its workers die with it (dockyard.lifecycle)


FORKED = 2  # seconds strace holds each new process and thread of serve at its first system call


def test_a_worker_stopped_as_it_is_forked_stops(tmp_path: Path) -> None:
    """Granian stops the workers it has just forked when serve is stopped as it starts them. CPython
    drops a signal that reaches a child between the fork and its own after-fork step (which clears the
    signals noted before it, lest one meant for the parent be handled twice): such a worker loaded the
    app, served, and Granian killed it 10 s later. strace holds each worker at its first system call
    (glibc's set_robust_list, as fork returns in the child), where the test sends it the SIGTERM
    Granian sends at a stop."""
    log_path = tmp_path / "server.log"
    process = start_held(tmp_path, log_path, "set_robust_list", FORKED, 1)
    serve: int | None = None
    try:
        deadline = time.monotonic() + 90
        worker: int | None = None
        while worker is None:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
            serve = next(iter(children_of(process.pid)), None)  # strace's only child
            spawned = {int(pid) for _, pid in SPAWNED.findall(log_path.read_text())}
            workers = children_of(serve) & spawned if serve is not None else set()
            worker = next((pid for pid in workers if held(pid)), None)
        os.kill(worker, signal.SIGTERM)
        deadline = time.monotonic() + FORKED + STOPS_WITHIN
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(worker), f"the worker serves on after its SIGTERM:\n{log_path.read_text()}"
    finally:
        if serve is not None:  # at once: its workers die with it (dockyard.lifecycle), strace then
            with contextlib.suppress(ProcessLookupError):
                os.kill(serve, signal.SIGKILL)
        stop_process(process)
