"""`dockyard serve` for tests without paying its imports at every start: a fork server ("zygote").

A test run starts ~300 servers; each spent ~0.7 s of CPU starting an interpreter and importing what
serve runs (SQLAlchemy, the models, pydantic, the app, Granian) before it served a request. Each test
process now starts one zygote that imports those modules once, then forks a child for each server a
test asks for. The child becomes what `dockyard serve ARGS` would be: its own session, stdin from
/dev/null, stdout and stderr to the server's log, the test's environment and working directory, then
the `dockyard` command's own entry point (`dockyard.cli.entry.main`) with those arguments. What it runs
is the installed code, the same as a subprocess's; only the imports were done earlier.

The zygote is single-threaded and opens no connection, so forking it is safe (a pytest process runs
threads: test servers, clients, the xdist channel). It reports each child's exit status, so a test
sees a server's returncode as with subprocess.Popen (`ZygoteProcess` has the part of Popen's interface
the tests use). When its test process goes away (its request pipe closes), it kills the servers it
started and exits.

Not for a test of the process itself (what it imports, its memory, its command line, PYTHON*
variables read at interpreter start): those start `dockyard serve` as a subprocess
(`start_server(fork=False)`). DOCKYARD_TEST_ZYGOTE=0 turns the zygote off for a whole run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ENABLED = os.environ.get("DOCKYARD_TEST_ZYGOTE", "1") != "0"

# What `dockyard serve` imports on its way to serving (cli.entry, cli.slim and cli.server; config
# loading; dockyard.app and the modules a worker loads lazily, app.WORKER_LAZY_MODULES and each auth
# mode's; the filesystem driver, both databases' dialects, the first start's accounts; Granian).
PRELOAD = (
    "dockyard.cli.entry",
    "dockyard.cli.slim",
    "dockyard.cli.server",
    "dockyard.config.loader",
    "dockyard.app",
    "dockyard.bootstrap",
    "dockyard.db.session",
    "dockyard.db.engine",
    "dockyard.db.revision",
    "dockyard.accounts.bootstrap",
    "dockyard.signatures.services",
    "dockyard.storage.driver.filesystem",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "granian",
    "granian.constants",
    "granian.http",
    # What a worker loads on first use for dockyard's own auth (tokens, password hashes) and TLS.
    "jwt",
    "argon2",
    "cryptography.x509",
    # The password strength check (accounts.passwords), which the first start's administrator goes
    # through in serve's start-up child: ~60 ms of CPU to import, in each server with auth on.
    "zxcvbn",
    # What Granian's worker start (multiprocessing's fork) and a worker's first request handed to a
    # thread (anyio's asyncio backend) load, in each server.
    "multiprocessing.popen_fork",
    "anyio._backends._asyncio",
    # The scans' services and models, which a worker builds on its first push (scans.pushes): ~45 ms
    # of CPU to import, in each server that is pushed to.
    "dockyard.scans.interfaces",
    "dockyard.scans.models",
    "dockyard.scans.services",
)


# ---- in the zygote process -------------------------------------------------------------------------


def _preload() -> None:
    import importlib

    from sqlalchemy.orm import configure_mappers

    from dockyard.app import WORKER_LAZY_MODULES
    from dockyard.app.auth import AUTH_MODULES

    for name in (*PRELOAD, *WORKER_LAZY_MODULES, *(m for modules in AUTH_MODULES.values() for m in modules)):
        importlib.import_module(name)
    configure_mappers()
    _build_management_routes()


def _build_management_routes() -> None:
    """The management API's routers, imported and included once here, each route's state built (what
    a worker does on its first request under their paths: ~0.3-0.8 s of CPU for a first call such as
    GET /api/v1/projects, in each server that got one). A server forked from here still includes them
    in its own API on the first request under their paths (api/management/router_groups.py), with the
    routes this process built (`IncludedRouters`, shared by every API app of a process)."""
    from fastapi.routing import iter_route_contexts

    from dockyard.api.management.app import included_routers
    from dockyard.api.management.router_groups import ALL

    shared = included_routers()
    for name in ALL:
        for _ in iter_route_contexts(shared.routes(name)):  # FastAPI builds them on the first request
            pass


def _run_child(request: dict[str, object]) -> int:
    """In the forked child: become `dockyard ARGS` as a subprocess started with start_new_session,
    stdin /dev/null and stdout+stderr to the log would be. Returns its exit status."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(str(request["cwd"]))
    # A restarted server (tests/cluster) appends: its log keeps what the process before it wrote.
    keep = os.O_APPEND if request.get("append") else os.O_TRUNC
    log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | keep, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 1 << 16)
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    args = request["args"]
    assert isinstance(args, list)
    sys.argv = ["dockyard", *args]
    from dockyard.cli.entry import main

    try:
        main()
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            return 1
        return exc.code or 0
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):
                stream.flush()


def _fork_child(request: dict[str, object]) -> int:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _run_child(request)
        finally:
            os._exit(code)
    return pid


def zygote_main(requests_fd: int, answers_fd: int) -> None:
    # `python -c` searched the working directory first ('' in sys.path): a child works in its test's
    # directory, whose files must not shadow a module it imports later.
    sys.path[:] = [os.getcwd() if entry == "" else entry for entry in sys.path]
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    answers = os.fdopen(answers_fd, "w", buffering=1)
    requests = os.fdopen(requests_fd, "r", buffering=1)
    children: set[int] = set()
    answers.write("ready\n")
    while True:
        readable, _, _ = select.select([requests, wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 512)
        _report_exits(children, answers)
        if requests in readable:
            line = requests.readline()
            if not line:  # the test process is gone: so are its servers
                for pid in children:
                    _kill_group(pid)
                return
            pid = _fork_child(json.loads(line))
            children.add(pid)
            answers.write(f"started {pid}\n")
            _report_exits(children, answers)


def _report_exits(children: set[int], answers: object) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        answers.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")  # type: ignore[attr-defined]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


# ---- in the test process ---------------------------------------------------------------------------


class Zygote:
    """The test process's side: one zygote per test process, started on first use."""

    def __init__(self) -> None:
        requests_read, self._requests = os.pipe()
        answers_read, answers_write = os.pipe()
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"dockyard-zygote-{os.getpid()}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"from tests.support.zygote import zygote_main; "
                    f"zygote_main({requests_read}, {answers_write})",
                ],
                pass_fds=(requests_read, answers_write),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
        os.close(requests_read)
        os.close(answers_write)
        self._answers = answers_read
        self._buffer = b""
        self._lock = threading.Lock()
        self.exits: dict[int, int] = {}
        self._started: list[int] = []
        line = self._next_line(timeout=120)
        if line != "ready":
            raise RuntimeError(f"the test zygote did not start ({line!r}): see {log}")

    def cpu_seconds(self) -> float:
        """CPU the zygote and the servers it reaped used so far (they are not this process's children:
        os.times() does not count them)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def spawn(
        self, args: list[str], env: dict[str, str], cwd: Path, log: Path, append: bool = False
    ) -> ZygoteProcess:
        request = {"args": args, "env": env, "cwd": str(cwd), "log": str(log), "append": append}
        with self._lock:
            os.write(self._requests, (json.dumps(request) + "\n").encode())
            deadline = time.monotonic() + 60
            while not self._started:
                self._read_answers(max(0.0, deadline - time.monotonic()))
                if time.monotonic() > deadline:
                    raise RuntimeError("the test zygote did not fork a server within 60 s")
            pid = self._started.pop(0)
        return ZygoteProcess(self, pid, [sys.executable, "-m", "dockyard", *args])

    def returncode(self, pid: int, timeout: float = 0.0) -> int | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while pid not in self.exits:
                remaining = deadline - time.monotonic()
                self._read_answers(max(0.0, remaining))
                if remaining <= 0:
                    break
            return self.exits.get(pid)

    def _read_answers(self, timeout: float) -> None:
        line = self._next_line(timeout)
        while line is not None:
            kind, pid, *rest = line.split()
            if kind == "started":
                self._started.append(int(pid))
            elif kind == "exit":
                self.exits[int(pid)] = int(rest[0])
            line = self._next_line(0)

    def _next_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self._answers], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(self._answers, 65536)
            if not chunk:
                raise RuntimeError(f"the test zygote exited ({self.process.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


class ZygoteProcess:
    """A server forked by the zygote, with the part of subprocess.Popen's interface tests use."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]) -> None:
        self._zygote = zygote
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self.returncode = self._zygote.returncode(self.pid, min(remaining, 1.0))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def zygote_cpu_seconds() -> float:
    """What Zygote.cpu_seconds says for this process's zygote, 0 when none was started."""
    return _zygote.cpu_seconds() if _zygote is not None else 0.0


def zygote() -> Zygote:
    """This test process's zygote (started on first use; it stops when the process does)."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.process.poll() is not None:
            _zygote = Zygote()
        return _zygote
