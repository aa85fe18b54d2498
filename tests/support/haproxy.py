"""A real HAProxy (Debian's package) on a free loopback port in front of N dockyard nodes, for tests.

The configuration is deploy/haproxy.cfg itself, with only what must differ on a test machine rewritten:
the frontend and stats ports (free loopback ports) and the server lines (the test's nodes instead of
node1..node3 in compose). Everything else (timeouts, retries, redispatch, leastconn, the /readyz check
with its inter/fall/rise/slowstart) is the example's, so the tests exercise the example: a rewrite
that no longer finds what it replaces fails loudly instead of testing something else.

HAProxy logs (its `log stdout`) go to haproxy.log in the work directory. `stop()` ends it by PID.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.processes import stop_process
from tests.support.server import REPO_ROOT, free_port, require_tool

EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "haproxy.cfg"
BACKEND = "dockyard"


def config_for(template: str, port: int, stats_port: int, backends: list[tuple[str, str]]) -> str:
    """deploy/haproxy.cfg with the frontend on 127.0.0.1:port, the stats page on stats_port and
    `backends` ((name, host:port) pairs) as the servers of the `dockyard` backend."""
    text, bound = re.subn(r"(?m)^(\s+)bind :5000$", rf"\g<1>bind 127.0.0.1:{port}", template)
    text, stats = re.subn(r"(?m)^(\s+)bind 127\.0\.0\.1:8404$", rf"\g<1>bind 127.0.0.1:{stats_port}", text)
    servers = re.compile(r"(?m)^(\s+)server node\d+ node\d+:5000\n")
    indent = servers.search(text)
    if bound != 1 or stats != 1 or indent is None:
        raise AssertionError(f"{EXAMPLE_CONFIG} changed: the test no longer finds its bind/server lines")
    lines = "".join(f"{indent.group(1)}server {name} {address}\n" for name, address in backends)
    text = servers.sub("", text)
    return text[: indent.start()] + lines + text[indent.start() :]


@dataclass
class RunningHAProxy:
    url: str
    host: str
    stats_url: str
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process, grace=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def server_states(self) -> dict[str, str]:
        """Each backend server's state as HAProxy's stats report it: UP, DOWN, `UP 1/3`, MAINT..."""
        answer = httpx.get(f"{self.stats_url};csv", timeout=5)
        answer.raise_for_status()
        rows = csv.DictReader(io.StringIO(answer.text.lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in {"FRONTEND", "BACKEND"}
        }

    def wait_for_state(self, server: str, up: bool, timeout: float = 60.0) -> None:
        """Poll until HAProxy reports server UP (fully: after `rise` checks) or DOWN."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            try:
                state = self.server_states().get(server, "")
            except httpx.HTTPError:  # not listening yet
                state = "no stats page"
            if (state == "UP") if up else state.startswith("DOWN"):
                return
            time.sleep(0.2)
        raise AssertionError(f"{server} is {state!r} after {timeout}s, expected {'UP' if up else 'DOWN'}")


def start_haproxy(workdir: Path, backends: list[tuple[str, str]], timeout: float = 30.0) -> RunningHAProxy:
    """Check and start HAProxy with deploy/haproxy.cfg rewritten for `backends`; wait until every
    server is UP (so the nodes' /readyz passed HAProxy's own check)."""
    binary = require_tool("haproxy")
    workdir.mkdir(parents=True, exist_ok=True)
    port, stats_port = free_port(), free_port()
    config_path = workdir / "haproxy.cfg"
    config_path.write_text(config_for(EXAMPLE_CONFIG.read_text(), port, stats_port, backends))
    check = subprocess.run([binary, "-c", "-f", str(config_path)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy -c refused the config:\n{check.stdout}{check.stderr}")
    log_path = workdir / "haproxy.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    proxy = RunningHAProxy(
        f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", f"http://127.0.0.1:{stats_port}/stats",
        config_path, log_path, process,
    )  # fmt: skip
    try:
        for name, _ in backends:
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {process.returncode}:\n{proxy.log()}")
            proxy.wait_for_state(name, up=True, timeout=timeout)
    except BaseException:
        proxy.stop()
        raise
    return proxy


__all__ = ["RunningHAProxy", "config_for", "start_haproxy"]
