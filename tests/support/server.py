"""Start a real `dockyard serve` on a free loopback port for tests, and stop it after."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import cpu_accounting, zygote
from tests.support.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKYARD = str(Path(sys.executable).with_name("dockyard"))

# Set by tests/conftest.py when DOCKYARD_TEST_DB=postgresql: the database URL for a datadir (a new empty
# database the first time, the same one when a test restarts a server on that datadir), used by every
# server whose config names no database.url.
database_url_factory: Callable[[str], str] | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class RunningServer:
    url: str
    host: str  # host:port, as clients name the registry
    datadir: Path
    config_path: Path
    process: subprocess.Popen[bytes] | zygote.ZygoteProcess
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    # For DOCKYARD_TEST_CPU_LOG (tests/support/cpu_accounting.py): seconds until it answered, its CPU then.
    ready_after: float | None = None
    ready_cpu: float | None = None

    def stop(self) -> None:
        if cpu_accounting.LOG_DIR:  # a server that has exited counts, with the CPU of what is left of it
            cpu_accounting.server_log_line(self.process.pid, self.ready_after, self.ready_cpu)
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(
    workdir: Path,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
    timeout: float = 30.0,
    bind: str = "127.0.0.1",
    wait: bool = True,
    migrated: bool = True,
    fork: bool = True,
) -> RunningServer:
    """Write a config into workdir, start `dockyard serve --config` and wait until /v2/ answers (not
    with `wait=False`: then return once it is started).

    `migrated`: the server's database starts as a copy of a migrated template (SQLite: one per test
    process; PostgreSQL: one per run, tests/support/postgres_shared.py): its start finds the schema at
    the head and skips Alembic (~0.5 s of CPU less per start, hundreds of starts per run); False leaves
    an empty datadir for serve to migrate, as a first `make serve` does.

    `fork`: the server is forked from this test process's zygote (tests/support/zygote.py: serve's
    imports done once per test process, not at each start); False starts `dockyard serve` as a
    subprocess, for the tests of the process itself.

    `bind` is the loopback address to listen on: 127.0.0.1, or ::1 (then url and host name `[::1]:port`).
    """
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(bind)
    host = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    base: dict[str, Any] = {
        "datadir": str(workdir / "data"),
        "http": {"addr": host, "workers": 1},
        "log": {"level": "info"},
        # The protocol suites run open, like registry:2 without auth; auth suites turn it on.
        "auth": {"enabled": False},
        # No job-worker child (forked from serve, it still costs ~0.25 s of CPU per start, 1.1 s when it
        # was an interpreter of its own): tests of jobs, GC runs, retention runs and upload purging turn
        # it on with {"jobs": {"run_in_serve": True}}.
        "jobs": {"run_in_serve": False},
        # No fdatasync of SQLite's WAL after each commit: on this disk it costs ~200 µs of CPU and up
        # to several ms of waiting per write, which the suite's thousands of writes felt (CI 13:04 ->
        # 14:31). Its tests: tests/unit/db/test_durable_commit.py, and the servers of
        # test_upload_crash.py, which keep the default.
        "database": {"flush_commits": False},
    }
    if tls:
        base["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    merged = deep_merge(base, config or {})
    host = str(merged["http"]["addr"])  # a restart may ask for the address it had
    # storage.inmemory servers keep their default: a database as ephemeral as their blobs.
    ephemeral = "inmemory" in merged.get("storage", {})
    own_database = not ephemeral and not merged.get("database", {}).get("url")
    if database_url_factory is not None and own_database:
        merged["database"] = {**merged.get("database", {}), "url": database_url_factory(merged["datadir"])}
    elif own_database and migrated and merged.get("version") is None:
        _migrated_sqlite_in(Path(merged["datadir"]))
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(merged))
    log_path = workdir / "server.log"
    full_env = {**os.environ, **(env or {})}
    process: subprocess.Popen[bytes] | zygote.ZygoteProcess
    if fork and zygote.ENABLED:
        process = zygote.zygote().spawn(["serve", "--config", str(config_path)], full_env, workdir, log_path)
    else:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [DOCKYARD, "serve", "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=workdir,
                start_new_session=True,
            )
    scheme = "https" if tls else "http"
    server = RunningServer(
        f"{scheme}://{host}",
        host,
        Path(merged["datadir"]),
        config_path,
        process,
        log_path,
        env or {},
    )
    if not wait:
        return server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockyard serve exited with {process.returncode}:\n{server.log()}")
        try:
            answer = httpx.get(f"{server.url}/v2/", verify=False, timeout=1)
            # Only dockyard sets X-Request-Id: another server that took the port does not count.
            if answer.status_code < 500 and "x-request-id" in answer.headers and process.poll() is None:
                if cpu_accounting.LOG_DIR:
                    server.ready_after = round(time.monotonic() - started, 3)
                    server.ready_cpu = round(cpu_accounting.session_cpu_seconds(process.pid), 3)
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"dockyard serve did not answer within {timeout}s:\n{server.log()}")


def _migrated_sqlite_in(datadir: Path) -> None:
    """The embedded default's database file (`<datadir>/dockyard.db`) as a copy of the migrated template,
    unless the datadir has one already (a restart)."""
    from tests.support.sqlite_template import copy_migrated_sqlite

    datadir.mkdir(parents=True, exist_ok=True)
    copy_migrated_sqlite(datadir / "dockyard.db")


def wait_until_answering(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """For a server a test starts by hand (not through start_server): wait until GET {url}/v2/ gets
    any answer; fail if the process exits first or nothing answers within `timeout` (a start takes
    seconds, more on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            httpx.get(f"{url}/v2/", timeout=5)
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout}s"
            time.sleep(0.1)


def require_tool(name: str) -> str:
    """The path of a CLI tool the tests need; in CI a missing tool is a failure, never a skip."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make test` (it installs the test tools)")
    return path
