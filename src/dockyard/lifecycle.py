"""Child processes of `dockyard serve` die with it, even when it is killed with SIGKILL.

`serve` runs its HTTP workers (forked by Granian) and its job runner (a child process) beside itself.
Were they to outlive it, a restart would run two generations side by side on the same port (a restart
into read-only mode would still accept pushes through the old workers). So each child:

- from its very first instruction (`bind_to_parent`: in an HTTP worker a hook serve registers for
  fork, in the job runner the first line of its command) asks the kernel for SIGKILL when its parent
  dies (prctl PR_SET_PDEATHSIG; the parent *thread* that forked it, which for both kinds of child lives
  as long as the process), and exits at once if the parent is gone already (it died before the prctl).
  While it starts it has nothing in flight, and SIGKILL needs no handler to run: a worker loading the
  app when serve dies goes at once, not once it has loaded it (and taken database connections, written
  the first start's rows, held the port) a second or more later;
- once it can serve (`die_with_parent`) asks for SIGTERM instead, to finish its requests, and watches
  its parent's pid as a fallback: on a change it sends itself SIGTERM, and if it has not stopped
  `grace` seconds later (a request that does not finish), it kills itself.

`serve` names itself in PARENT_ENV before it starts any child; a process without it (under another
server, or a standalone `dockyard worker`) is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from ctypes.util import find_library  # this module's own name: a test replaces it here only
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("dockyard.lifecycle")

PARENT_ENV = "_DOCKYARD_SERVE_PID"  # set by serve (not a DOCKYARD_* setting)
CONFIG_ENV = "DOCKYARD_CONFIG"  # the config file worker_app reads under another server (uvicorn)
# The settings serve validated, for its children (config.loader.hand_down; not a DOCKYARD_* setting).
SETTINGS_ENV = "_DOCKYARD_SETTINGS"
ADMIN_PASSWORD_ENV = "DOCKYARD_ADMIN_PASSWORD"  # the first administrator's password, if chosen
WATCH_INTERVAL = 0.5  # seconds between looks at the parent's pid
# An HTTP worker whose serve died gets this long to finish its requests (serve's own kill timeout).
WORKER_GRACE = 10
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
# The file serve's HTTP workers touch once they have loaded the app (not a DOCKYARD_* setting).
READY_ENV = "_DOCKYARD_READY_FILE"


def mark_parent() -> None:
    """In `serve`, before any child starts: the children's parent is this process, and every process
    forked from it from now on (Granian's HTTP workers) is bound to it before it runs anything else."""
    os.environ[PARENT_ENV] = str(os.getpid())
    libc()  # loaded here, not in each child after the fork
    if not _HOOKED:
        os.register_at_fork(after_in_child=bind_to_parent)
        _HOOKED.append(True)


_HOOKED: list[bool] = []
_LIBC: list[ctypes.CDLL] = []


def libc() -> ctypes.CDLL:
    """The C library (prctl here, mallopt in `services.tune_malloc`), loaded once per process by its
    soname: `ctypes.util.find_library` forks and runs `ldconfig -p` to find it, which every HTTP
    worker did between its fork and its first answer (and serve and the job runner at their start)."""
    if not _LIBC:
        try:
            loaded = ctypes.CDLL("libc.so.6", use_errno=True)  # glibc's, on every Linux dockyard runs on
        except OSError:
            loaded = ctypes.CDLL(find_library("c"), use_errno=True)
        _LIBC.append(loaded)
    return _LIBC[0]


def name_process(name: str) -> None:
    """Name this process in ps, top and /proc/PID/comm (15 bytes at most): one forked from serve
    has serve's command line."""
    libc().prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _expected_parent() -> int | None:
    """Serve's pid in a child of serve; None elsewhere (serve itself included)."""
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit() or int(expected) == os.getpid():
        return None
    return int(expected)


def _on_parent_death(signum: int, parent: int) -> None:
    """prctl(PR_SET_PDEATHSIG, signum); then, if `parent` is gone already (it died before the prctl,
    so no signal comes), exit at once: not sys.exit, which whatever runs this child may catch."""
    if libc().prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        log.warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): relying on the parent watch", ctypes.get_errno()
        )
    if os.getppid() != parent:
        os._exit(0)


def bind_to_parent() -> None:
    """First thing in a child of `serve` (a no-op elsewhere): SIGKILL from the kernel when serve dies;
    exit now if it is gone already. Nothing runs in it yet that would have to finish, and no handler
    or lock of the child's has to work for it to go."""
    parent = _expected_parent()
    if parent is not None:
        _on_parent_death(signal.SIGKILL, parent)


def started_by_serve() -> bool:
    """Whether this process is a child of `serve` (an HTTP worker or its job runner). `serve` migrates
    the database before it starts any child, so they need not."""
    expected = os.environ.get(PARENT_ENV, "")
    return expected.isdigit() and int(expected) != os.getpid()


def expect_ready_workers(path: Path) -> None:
    """In `serve`, before any child starts: its HTTP workers touch `path` once they can answer."""
    path.unlink(missing_ok=True)
    os.environ[READY_ENV] = str(path)


def mark_ready() -> None:
    """In an HTTP worker of `serve` that has loaded the app (a no-op elsewhere)."""
    path = os.environ.get(READY_ENV)
    if path and started_by_serve():
        Path(path).touch()


def a_worker_is_ready() -> bool:
    path = os.environ.get(READY_ENV)
    return path is not None and Path(path).exists()


def die_with_parent(grace: float, on_death: int = signal.SIGTERM) -> None:
    """In a child of `serve` that is ready to serve (a no-op elsewhere): `on_death` from the kernel when
    serve dies (SIGTERM: stop gracefully; SIGKILL: at once, whatever the process is doing), SIGKILL
    `grace` seconds later if still running; exit now if serve is gone already."""
    parent = _expected_parent()
    if parent is None:
        return
    _on_parent_death(on_death, parent)
    threading.Thread(target=_watch_parent, args=(parent, grace), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int, grace: float) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    log.warning("serve (pid %d) is gone: stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)  # normally the kernel did already (PR_SET_PDEATHSIG)
    time.sleep(grace)
    log.error("still running %gs after serve died: killing this process", grace)
    os.kill(os.getpid(), signal.SIGKILL)


def exit_after(work: Callable[[], None]) -> NoReturn:
    """In a forked child: run `work`, then leave with its status through os._exit (none of the parent's
    exit handlers or buffers run twice). `sys.exit("message")` prints the message and exits 1, as the
    interpreter would; any other exception is printed and exits 1."""
    code = 1
    try:
        work()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        else:
            code = exc.code or 0
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
