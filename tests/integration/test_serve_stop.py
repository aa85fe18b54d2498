"""`dockyard serve` with its job runner stops within seconds of SIGTERM, idle or still starting: each
`docker stop`, rolling restart or scale-in waits on it.

Before: Granian forks its HTTP workers after serve's drain handler is in place, so a worker still
loading the app took serve's SIGTERM handler for its own, ignored the signal, and serve waited Granian's
10 s kill timeout before it stopped the job runner (every stop of a server that had just started).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.integration.test_kill_serve import children_of
from tests.support.processes import stop_process
from tests.support.server import DOCKYARD, database_url_factory, free_port, start_server
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


def test_a_server_stopped_while_its_workers_start_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM as soon as the HTTP workers are forked, while they load the app (about a second, more
    on a busy machine)."""
    host = f"127.0.0.1:{free_port()}"
    datadir = tmp_path / "data"
    config = {
        "datadir": str(datadir),
        "http": {"addr": host, "workers": 2},
        "auth": {"enabled": False},
        "jobs": {"run_in_serve": True},
    }
    if database_url_factory is not None:
        config["database"] = {"url": database_url_factory(str(datadir))}
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        # The binary: the test signals the `serve` process and checks how it stops.
        process = subprocess.Popen(
            [DOCKYARD, "serve", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ,
            start_new_session=True,
        )
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
