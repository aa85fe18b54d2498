"""Start the registries under test on free loopback ports with fresh data dirs, and stop them.

Two references: Debian's `docker-registry` (CNCF distribution 2.8.2, what `registry:2` runs) and
distribution v3.1.1 (what `registry:3` runs, the peer to beat), from the project's `shared/peers/`.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DISTRIBUTION_BINARY = "/usr/bin/docker-registry"
DISTRIBUTION_2 = "distribution 2.8.2"
DISTRIBUTION_3 = "distribution v3.1.1"
PEER_SCRIPT = Path("distribution-v3.1.1") / "run.sh"
PEERS_ENV = "DOCKYARD_BENCH_PEERS"  # a directory holding distribution-v3.1.1/run.sh, if not found beside
# Seconds between GET /v2/ while a server starts, as bench.startup polls. It was 0.1: a server refuses
# connections until its first worker listens, so each start read as the next multiple of ~0.1 s after
# it (0.51 or 0.61 s for a 0.47 s start, 0.10 s for v3.1.1's ~0.03): the scale bench's start-up rows.
LAUNCH_POLL = 0.005


def peer_script() -> Path:
    """v3.1.1's `run.sh`: in $DOCKYARD_BENCH_PEERS, else in the nearest `shared/peers/` above the repo
    (the project's shared folder sits beside its clones and worktrees)."""
    if os.environ.get(PEERS_ENV):
        candidates = [Path(os.environ[PEERS_ENV]) / PEER_SCRIPT]
    else:
        repo_root = Path(__file__).resolve().parents[1]
        candidates = [parent / "shared" / "peers" / PEER_SCRIPT for parent in repo_root.parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RuntimeError(f"distribution v3.1.1 not found (looked for {candidates[0]} and up; set {PEERS_ENV})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerAuth:
    """How a client authenticates to a server: `basic` (htpasswd: Basic on every request) or `token`
    (Docker token auth: /token answers a Bearer token; /v2 may also take Basic)."""

    scheme: str  # "basic" | "token"
    username: str
    password: str


@dataclass
class Server:
    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    auth: ServerAuth | None = None
    # How it was started, to start it again (bench/scale.py measures start-up that way).
    argv: list[str] | None = None
    workdir: Path | None = None
    env: dict[str, str] | None = None
    shares_session: bool = False  # runs in the bench's session (`_launch`'s new_session=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        # The server runs in a process group of its own: signal the group so worker processes go too.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def _answers_v2(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=1)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


def without_bytecode_opt_out(environment: Mapping[str, str]) -> dict[str, str]:
    # uv leaves the venv without .pyc files, and some shells set PYTHONDONTWRITEBYTECODE: every start of a
    # server would compile SQLAlchemy, pydantic and the rest again (~1 s of CPU, in its start-up figure).
    return {key: value for key, value in environment.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _launch(
    name: str,
    argv: list[str],
    workdir: Path,
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    new_session: bool = True,
) -> Server:
    """`new_session`: the server in a session of its own (Linux gives each session one share of the
    CPU: autogroups), else in this process's session, in a process group of its own (bench/gc.py)."""
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**without_bytecode_opt_out(os.environ), **(env or {})},
            start_new_session=new_session,
            process_group=None if new_session else 0,  # stop() signals the group either way
        )
    server = Server(
        name,
        "127.0.0.1",
        port,
        process,
        log_path,
        argv=argv,
        workdir=workdir,
        env=env,
        shares_session=not new_session,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        if _answers_v2(server.host, port):
            return server
        time.sleep(LAUNCH_POLL)
    server.stop()
    raise RuntimeError(f"{name} did not answer /v2/ within {timeout}s:\n{server.log_tail()}")


def relaunch(server: Server) -> tuple[Server, float]:
    """Stop `server` and start it again the same way; with the seconds until /v2/ answered."""
    assert server.argv is not None and server.workdir is not None
    server.stop()
    started = time.monotonic()
    again = _launch(server.name, server.argv, server.workdir, server.port, server.env)
    again.auth = server.auth
    return again, time.monotonic() - started


def start_distribution(workdir: Path, htpasswd: Path | None = None, version: str = DISTRIBUTION_2) -> Server:
    """distribution (`version`: DISTRIBUTION_2 or DISTRIBUTION_3) as people tune it for speed: in-memory
    blob descriptor cache, no access log. Both read the same registry:2 config file.

    With `htpasswd` (a bcrypt htpasswd file), Basic auth as registry:2 documents it.
    """
    if version == DISTRIBUTION_3:
        argv = ["sh", str(peer_script())]
    elif shutil.which(DISTRIBUTION_BINARY) is None:
        raise RuntimeError(f"{DISTRIBUTION_BINARY} is missing: apt-get install docker-registry")
    else:
        argv = [DISTRIBUTION_BINARY, "serve"]
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "cache": {"blobdescriptor": "inmemory"},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}}
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    # run.sh unpacks its binary into $TMPDIR: one per bench run, so concurrent runs never race on it.
    env = {"TMPDIR": str(workdir)} if version == DISTRIBUTION_3 else None
    return _launch(version, [*argv, str(config_path)], workdir, port, env=env)


def start_references(workdir: Path, htpasswd: Path | None = None) -> list[Server]:
    """Both distributions, 2.8.2 first; each in its own directory under `workdir`."""
    servers: list[Server] = []
    try:
        for version, name in ((DISTRIBUTION_2, "distribution"), (DISTRIBUTION_3, "distribution-v3")):
            servers.append(start_distribution(workdir / name, htpasswd, version))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


# The `dockyard` command of whichever src/ is on PYTHONPATH: its entry point moved (cli/main.py, then
# cli/entry.py), and the venv's console script names the newer one.
ANY_REV_COMMAND = (
    "import sys\n"
    "try:\n    from dockyard.cli.entry import main\n"
    "except ImportError:\n    from dockyard.cli.main import main\n"
    "sys.argv[0] = 'dockyard'\n"
    "sys.exit(main())"
)


def dockyard_command(source: Path | None = None) -> list[str]:
    """The console script next to the interpreter running the bench (the project's venv); for another
    revision's `source`, its own entry point."""
    if source is not None:
        return [sys.executable, "-c", ANY_REV_COMMAND]
    return [str(Path(sys.executable).with_name("dockyard"))]


def resolve_rev(rev: str) -> str:
    """The full commit id a revision names now."""
    repo_root = str(Path(__file__).resolve().parents[1])
    completed = subprocess.run(
        ["git", "-C", repo_root, "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def snapshot_source(rev: str, dest: Path) -> Path:
    """The `src/` tree of a git revision, to bench a commit while the working tree is being edited."""
    repo_root = Path(__file__).resolve().parents[1]
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(repo_root), "archive", rev, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def describe_source(rev: str | None) -> str:
    """Which dockyard code ran: a commit, or the working tree (and whether it had uncommitted edits)."""
    repo_root = str(Path(__file__).resolve().parents[1])

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", repo_root, *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", rev or "HEAD")
    if rev:
        return f"commit {commit}"
    dirty = git("status", "--porcelain", "--", "src")
    return f"working tree at {commit}" + (" with uncommitted changes in src/" if dirty else "")


def write_dockyard_config(
    workdir: Path,
    workers: int,
    auth: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
) -> tuple[Path, int]:
    """The config file start_dockyard serves (see there), and the port it names."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "datadir": str(workdir / "data"),
        "http": {"addr": f"127.0.0.1:{port}", "workers": workers},
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        # The unauthenticated runs compare like with like: distribution runs open too.
        "auth": auth if auth is not None else {"enabled": False},
        **(sections or {}),
    }
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    return config_path, port


def dockyard_environment(source: Path | None, env: dict[str, str] | None = None) -> dict[str, str]:
    # PYTHONPATH comes before the editable install's path entry, in the server and in its workers.
    return {**(env or {}), **({"PYTHONPATH": str(source)} if source else {})}


def start_dockyard(
    workdir: Path,
    workers: int,
    source: Path | None = None,
    auth: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    sections: dict[str, Any] | None = None,
    name: str = "dockyard",
    config: tuple[Path, int] | None = None,
    new_session: bool = True,
) -> Server:
    """dockyard from the installed package, or from `source` (a src/ dir, see snapshot_source) if given.

    `auth` is the config's auth section (default: off, like distribution without auth); `env` is added
    to the server's environment (e.g. the first admin's password); `sections` are further top-level
    config sections (e.g. database, redis, storage: see bench/ha.py). `config`: a config file written
    already (write_dockyard_config), and its port, instead. `new_session`: see `_launch`.
    """
    config_path, port = config or write_dockyard_config(workdir, workers, auth, sections)
    argv = [*dockyard_command(source), "serve", "--config", str(config_path)]
    env = dockyard_environment(source, env)
    return _launch(name, argv, workdir, port, env=env, new_session=new_session)


def start_nullserver(workdir: Path) -> Server:
    """The do-nothing registry stub (bench/nullserver.py), to measure the load generator's ceiling."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    repo_root = str(Path(__file__).resolve().parents[1])
    argv = [sys.executable, "-m", "bench.nullserver", str(port)]
    return _launch("null server", argv, workdir, port, env={"PYTHONPATH": repo_root})
