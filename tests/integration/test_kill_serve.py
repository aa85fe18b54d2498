"""`kill -9` of the main `dockyard serve` process takes its HTTP workers and its job runner with it, so a
restart on the same port runs one generation: a restart into read-only mode refuses every push.

Before: the workers went on serving on the port (SO_REUSEPORT) beside the next generation, which then
answered only some of the requests; a restart into read-only mode still accepted about half the pushes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.support.ociclient import assert_error
from tests.support.server import start_server

GONE_WITHIN = 20.0  # seconds: SIGTERM from the kernel at once; a worker that hangs is killed at 10 s


def children_of(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(child) for child in found.stdout.split()}


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_sigkill_of_serve_takes_its_workers_along_and_a_restart_is_alone(tmp_path: Path) -> None:
    first = start_server(tmp_path / "first", {"http": {"workers": 2}, "jobs": {"run_in_serve": True}})
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while len(children := children_of(first.process.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(children) == 3, "expected 2 HTTP workers and the job runner"
        # Both workers have loaded the app (Granian says so per worker). Known gap, not tested here: a
        # worker still loading when serve is SIGKILLed has twice outlived it on a loaded machine.
        while not all(f"Started worker-{n}" in first.log() for n in (1, 2)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(f"Started worker-{n}" in first.log() for n in (1, 2)), first.log()[-2000:]
        # A client with a kept-alive connection to one of the old workers.
        kept = httpx.Client(base_url=first.url, timeout=10)
        assert kept.get("/v2/").status_code == 200

        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        deadline = time.monotonic() + GONE_WITHIN
        while any(running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if running(pid)], "children outlived serve's SIGKILL"

        readonly = {"storage": {"maintenance": {"readonly": {"enabled": True}}}}
        settings = {"datadir": str(first.datadir), "http": {"workers": 2, "addr": first.host}, **readonly}
        second = start_server(tmp_path / "second", settings)
        try:
            for _ in range(40):  # a new connection each: the kernel spreads them over every listener
                push = httpx.post(f"{second.url}/v2/lib/app/blobs/uploads/", headers={"Content-Length": "0"})
                assert_error(push, 405, "UNSUPPORTED")
            push = kept.post("/v2/lib/app/blobs/uploads/", headers={"Content-Length": "0"})
            assert_error(push, 405, "UNSUPPORTED")
        finally:
            kept.close()
            second.stop()
    finally:
        first.stop()
        for pid in children:  # whatever survived a failed run
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_started_again_runs_on_the_settings_serve_validated(tmp_path: Path) -> None:
    """Serve's children take the settings serve checked at start, not the config file again: a worker
    Granian starts in place of one that died serves as the others do, however the file was edited
    since. Before: it read the edited file (and with a broken one, failed in a loop)."""
    server = start_server(tmp_path, {"http": {"headers": {"X-Settings": ["at start"]}}})
    try:
        assert httpx.get(f"{server.url}/v2/").headers["x-settings"] == "at start"
        edited = yaml.safe_load(server.config_path.read_text())
        edited["http"]["headers"]["X-Settings"] = ["edited"]
        server.config_path.write_text(yaml.safe_dump(edited))
        (worker,) = children_of(server.process.pid)  # one HTTP worker, no job runner
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (children_of(server.process.pid) - {worker}) == set() and time.monotonic() < deadline:
            time.sleep(0.1)
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{server.url}/v2/", timeout=5)
                break
            except httpx.HTTPError:  # the new worker is still starting
                time.sleep(0.1)
        assert answer is not None, f"no worker answered after the first was killed:\n{server.log()}"
        assert answer.headers["x-settings"] == "at start"
        assert server.process.poll() is None
    finally:
        server.stop()
