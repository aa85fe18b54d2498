"""Start a real `redis-server` (Debian's package) on a free loopback port for tests, and stop it after.

No persistence (`--save ""`, `--appendonly no`): a restarted server starts empty, as a lost cache would.
`kill()` is SIGKILL (Redis vanishing mid-test); `start()` again reuses the same port, so clients
configured with the URL reconnect by themselves. A missing redis-server is a failure, never a skip.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.server import free_port, require_tool


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.binary = require_tool("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, *self._options()],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{self.log()}")
            if self._answers_ping():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer within {timeout}s:\n{self.log()}")

    def _options(self) -> list[str]:
        options = {"bind": "127.0.0.1", "port": str(self.port), "save": "", "appendonly": "no",
                   "dir": str(self.workdir)}  # fmt: skip
        return [part for name, value in options.items() for part in (f"--{name}", value)]

    def kill(self) -> None:
        """SIGKILL: gone at once, connections dropped, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class RedisSentinel(RedisServer):
    """A Sentinel watching one master (quorum 1): what redis+sentinel:// URLs name."""

    def __init__(self, workdir: Path, master: RedisServer, service: str = "mymaster") -> None:
        super().__init__(workdir)
        self.master = master
        self.service = service
        self.log_path = workdir / "sentinel.log"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def _options(self) -> list[str]:
        # Sentinel rewrites its config file, so it must be a file of its own.
        config = self.workdir / "sentinel.conf"
        config.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndir {self.workdir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
        )
        return [str(config), "--sentinel"]
