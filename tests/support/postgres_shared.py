"""One throwaway PostgreSQL cluster for all the test processes of a run, instead of one each.

Each xdist worker of the PostgreSQL pass ran its servers on a cluster of its own, and each worker of the
SQLite pass started another for its tests that run on both databases (tests/support/databases.py): four
initdbs, starts and template migrations per `make test`, all in the busiest first minutes of the passes.
Now the first test process to need a cluster starts one, and the others attach to it: they find it in a
directory named after the run (DOCKYARD_TEST_RUN_ID, which `make test` sets for both of its passes, else
xdist's id of the pass, else the process's own), under a file lock. Every database on it is still a test's
own (unique names), copied from the one migrated template (tests/support/postgres.py migrated_template).

The cluster belongs to a small keeper process, not to a test process: it starts PostgreSQL, then watches
the processes attached to it (a file per process, named by its pid and start time) and stops the cluster
and removes it when none is left alive, also when one was killed without detaching. A keeper that died
leaves its PostgreSQL to the next process that attaches, which stops it and starts another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.postgres import PostgresServer

RUN_ID_ENV = "DOCKYARD_TEST_RUN_ID"
# The servers of four test processes (two per pass) on it at once, ~30 connections at most each.
MAX_CONNECTIONS = 800
START_TIMEOUT = 120.0
WATCH_INTERVAL = 0.5


def share_directory() -> Path:
    run = os.environ.get(RUN_ID_ENV) or os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    return Path(tempfile.gettempdir()) / f"dockyard-pg-shared-{run}"


@contextlib.contextmanager
def shared_postgres() -> Iterator[PostgresServer]:
    """The run's cluster (started if no live one is there), attached to until the block ends."""
    directory = share_directory()
    with _locked(directory):
        users = directory / "users"
        users.mkdir(exist_ok=True)
        me = users / _process_id(os.getpid())
        me.touch()  # before a keeper starts: it never sees a cluster nobody uses
        state = _read_state(directory)
        if state is None or not _alive(state["keeper"]):
            if state is not None:
                _stop_leftover(state)
            try:
                state = _start_keeper(directory)
            except BaseException:
                me.unlink()
                raise
    try:
        yield PostgresServer(state["url"])
    finally:
        with contextlib.suppress(FileNotFoundError):
            me.unlink()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on `directory`, made if missing. The keeper removes the directory at its end
    (holding the lock): a lock taken on the file it unlinked is dropped and taken again on a new one."""
    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # removed between the mkdir and the open
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(directory / "lock").st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _process_id(pid: int) -> str:
    """pid.starttime: a pid the kernel gives to a new process later does not pass for the old one."""
    return f"{pid}.{_start_time(pid)}"


def _start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(process_id: str) -> bool:
    pid, _, start = process_id.partition(".")
    return _start_time(int(pid)) == start


def _live_users(directory: Path) -> list[str]:
    try:
        names = os.listdir(directory / "users")
    except FileNotFoundError:
        return []
    return [name for name in names if _alive(name)]


def _read_state(directory: Path) -> dict[str, str] | None:
    try:
        state: dict[str, str] = json.loads((directory / "state.json").read_text())
    except FileNotFoundError:
        return None
    return state


def _stop_leftover(state: dict[str, str]) -> None:
    """The cluster of a keeper that died (killed): stop its PostgreSQL, remove its files."""
    pid, _, start = state["postgres"].partition(".")
    if _start_time(int(pid)) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    from tests.support.postgres import remove_in_background

    remove_in_background(Path(state["root"]))


def _start_keeper(directory: Path) -> dict[str, str]:
    """Start the keeper (holding the lock) and wait until its cluster answers."""
    (directory / "state.json").unlink(missing_ok=True)
    log = directory / "keeper.log"
    with log.open("wb") as out:
        keeper = subprocess.Popen(
            [sys.executable, "-m", "tests.support.postgres_shared", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
            start_new_session=True,  # not stopped with the test process's group (Ctrl-C): it stops itself
        )
    deadline = time.monotonic() + START_TIMEOUT
    while (state := _read_state(directory)) is None:
        if keeper.poll() is not None or time.monotonic() > deadline:
            keeper.kill()
            raise RuntimeError(f"the shared PostgreSQL did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return state


# ---- in the keeper process ------------------------------------------------------------------------


def keep(directory: Path) -> None:
    from tests.support.postgres import start_postgres

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    cluster = start_postgres(MAX_CONNECTIONS)
    try:
        state = {
            "url": cluster.url,
            "root": str(cluster.root),
            "keeper": _process_id(os.getpid()),
            "postgres": _process_id(cluster.process.pid),
        }
        written = directory / "state.json.new"
        written.write_text(json.dumps(state))
        written.rename(directory / "state.json")
        while cluster.process.poll() is None:
            time.sleep(WATCH_INTERVAL)
            if not _live_users(directory):
                with _locked(directory):
                    if not _live_users(directory):  # nobody attached meanwhile
                        shutil.rmtree(directory, ignore_errors=True)
                        return
        print(f"postgres exited with {cluster.process.returncode}:\n{cluster.log()}", flush=True)
        (directory / "state.json").unlink(missing_ok=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    keep(Path(sys.argv[1]))
