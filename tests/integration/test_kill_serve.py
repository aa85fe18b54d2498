"""`kill -9` of the main `dockyard serve` process takes its HTTP workers and its job runner with it, so a
restart on the same port runs one generation: a restart into read-only mode refuses every push.

Before: the workers went on serving on the port (SO_REUSEPORT) beside the next generation, which then
answered only some of the requests; a restart into read-only mode still accepted about half the pushes.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.ociclient import assert_error
from tests.support.server import start_server
from tests.support.timeouts import HTTP_TIMEOUT

GONE_WITHIN = 20.0  # seconds: SIGTERM from the kernel at once; a worker that hangs is killed at 10 s
KILL_AFTER = (0.0, 2.0)  # seconds after exec: before, while and after the workers load the app
# One kill at a random moment within each tenth of KILL_AFTER: every stretch of the start is hit each
# run, in half the rounds. 20 moments drawn anywhere in it bunch up: 4 runs in 5 left a tenth unhit.
KILL_ROUNDS = 10
# Seconds from serve's SIGKILL until none of its processes is left, once Granian has started: a child
# still starting is SIGKILLed by the kernel at once, one that serves stops gracefully with nothing in
# flight. Before: a worker loading the app went on loading it (a second or more; connecting to the
# database, holding the port). Killed earlier, serve's start-up child finishes what it does (a migration
# cut short could leave SQLite's schema half done) and exits; it starts nothing.
KILLED_WITHIN = 1.0


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
        # Killed at once: the second worker may still be loading the app (the kernel kills it with serve).
        # A client with a kept-alive connection to one of the old workers.
        kept = httpx.Client(base_url=first.url, timeout=HTTP_TIMEOUT)
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
                push = httpx.post(
                    f"{second.url}/v2/lib/app/blobs/uploads/",
                    headers={"Content-Length": "0"},
                    timeout=HTTP_TIMEOUT,
                )
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
        assert httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT).headers["x-settings"] == "at start"
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


def session_processes(sid: int) -> list[int]:
    """The live processes of session `sid`: a server the tests start leads a session of its own, and all
    it starts stay in it (the job runner in a process group of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace")
    except OSError:
        return f"{pid} (gone)"


def port_is_free(host: str) -> bool:
    """Whether a listener could bind `host` (host:port) alone: not beside a listening socket an old
    process still holds (SO_REUSEADDR for connections in TIME_WAIT; no SO_REUSEPORT, as Granian takes)."""
    address, port = host.rsplit(":", 1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, int(port)))
        except OSError:
            return False
    return True


# Processes and the port over 20 kills, each start on a database the first start migrated: the same on
# either database, so the SQLite pass alone runs it (the two tests above run on both).
@pytest.mark.db_independent
def test_sigkill_of_serve_at_any_moment_of_its_start_takes_every_child_along(tmp_path: Path) -> None:
    """SIGKILL serve at random moments of its start (in the start-up child, while Granian forks the
    workers, while they load the app, while the job runner starts, once all serve): each time, none of
    its processes is left a moment later and the port is free. Before: a worker loading the app when
    serve died went on loading it (and its database connections, and the port) for a second or more,
    found serve gone only then; on CI one even served on."""
    datadir = tmp_path / "data"
    config = {"datadir": str(datadir), "http": {"workers": 2}, "jobs": {"run_in_serve": True}}
    start_server(tmp_path / "first", config, migrated=False).stop()  # the first start (migrations, admin)
    seed = random.randrange(1 << 32)
    chance = random.Random(seed)
    low, high = KILL_AFTER
    width = (high - low) / KILL_ROUNDS
    delays = [low + width * (stretch + chance.random()) for stretch in range(KILL_ROUNDS)]
    chance.shuffle(delays)
    failures: list[str] = []
    for round_number, delay in enumerate(delays):
        server = start_server(tmp_path / f"round-{round_number}", config, wait=False)
        time.sleep(delay)
        sid = server.process.pid
        os.kill(sid, signal.SIGKILL)
        server.process.wait()
        # Read once serve is gone: its children got their signal as it exited (a worker may log its
        # start between a read before the kill and the kill itself).
        log = server.log()
        granian = "Starting granian" in log  # its start-up child is done
        deadline = time.monotonic() + (KILLED_WITHIN if granian else GONE_WITHIN)
        # A killed worker's threads may still be tearing down (its files with them) after its main
        # thread shows as a zombie: the port must be free by the same deadline.
        while (
            (left := session_processes(sid)) or not port_is_free(server.host)
        ) and time.monotonic() < deadline:
            time.sleep(0.01)
        free = port_is_free(server.host)
        after = server.log()[len(log) :].splitlines()
        late = [line for line in after if "worker-" in line and "Stop" not in line]  # Spawning, Started
        if left or not free or late:
            commands = [command_of(pid) for pid in left]
            failures.append(
                f"round {round_number}, killed {delay:.2f}s after exec (Granian started: {granian}): left "
                f"{commands}, port free {free}, worker lines after the kill {late}:\n{server.log()[-1500:]}"
            )
        for pid in session_processes(sid):  # whatever is left of a failed round
            os.kill(pid, signal.SIGKILL)
    assert not failures, f"seed {seed}: " + "\n".join(failures)
