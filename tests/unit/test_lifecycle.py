"""A child of `serve` dies with it: SIGTERM from the kernel when serve is SIGKILLed, and SIGKILL `grace`
seconds later when SIGTERM does not stop it (a worker stuck in a request)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.db_independent

PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from dockyard.lifecycle import mark_parent
    mark_parent()
    subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    time.sleep(120)
    """
)
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from dockyard.lifecycle import die_with_parent
    if sys.argv[1] == "stuck":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SIGTERM does not stop it
    die_with_parent(grace=1)
    print(os.getpid(), flush=True)
    time.sleep(120)
    """
)


def running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("kind", ["stops", "stuck"])
def test_a_child_dies_when_serve_is_killed(kind: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, kind], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert running(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and running(child):  # a failed run leaves nothing behind
            os.kill(child, signal.SIGKILL)


LATE_CHILD = textwrap.dedent(
    """
    import os, time
    from dockyard.lifecycle import PARENT_ENV, die_with_parent
    os.environ[PARENT_ENV] = str(os.getppid() + 1_000_000)  # a serve that is gone already
    try:  # as Granian loads an app: an exception from the factory does not end the worker
        die_with_parent(grace=1)
    except BaseException:
        pass
    print("still serving", flush=True)
    time.sleep(30)
    """
)


def test_a_child_whose_serve_died_before_it_looked_exits_whatever_catches_exceptions() -> None:
    """An HTTP worker still loading the app when serve is SIGKILLed finds serve gone: it must end even
    though Granian catches what the app factory raises (it served on, unwatched, beside the next
    generation: a CI failure of test_kill_serve.py)."""
    child = subprocess.run(
        [sys.executable, "-c", LATE_CHILD], capture_output=True, text=True, timeout=20
    )
    assert "still serving" not in child.stdout
    assert child.returncode == 0, child.stderr


FORKING_PARENT = textwrap.dedent(
    """
    import os, signal, sys, time
    from dockyard.lifecycle import mark_parent
    mark_parent()
    pid = os.fork()
    if pid == 0:  # as a Granian worker loading the app: it ignores SIGTERM, has no watch, never looks
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
        os._exit(0)
    print(pid, flush=True)
    time.sleep(120)
    """
)


def test_a_child_forked_by_serve_dies_with_it_before_it_runs_anything() -> None:
    """Serve's fork hook binds each process forked from it (Granian's HTTP workers) to it before the
    child runs a line of its own: SIGKILL from the kernel when serve dies, whatever the child is doing.
    Before: a worker was bound only once it had loaded the app, a second or more after the fork."""
    parent = subprocess.Popen([sys.executable, "-c", FORKING_PARENT], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert running(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 2
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and running(child):  # a failed run leaves nothing behind
            os.kill(child, signal.SIGKILL)


def test_a_child_forked_after_serve_died_exits_at_once() -> None:
    """The fork hook checks the parent after its prctl: a child forked by a serve that is gone by the
    time the hook runs (here: a serve that names another pid) does not run on."""
    script = textwrap.dedent(
        """
        import os, time
        from dockyard.lifecycle import PARENT_ENV, mark_parent
        mark_parent()
        os.environ[PARENT_ENV] = str(os.getpid() + 1_000_000)  # a serve that is gone already
        pid = os.fork()
        if pid == 0:
            print("child ran", flush=True)
            os._exit(3)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert result.stdout.split() == ["0"], result.stderr


def test_the_c_library_is_loaded_without_running_ldconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    # ctypes.util.find_library forks and runs `ldconfig -p`: each HTTP worker did so between its fork
    # and its first answer (services.tune_malloc), and serve and the job runner at their start.
    from dockyard import lifecycle, services

    looked_up: list[str] = []
    # lifecycle's own reference, not ctypes.util's or subprocess's: threads other tests of this worker
    # left running may look up a library or start a process meanwhile.
    monkeypatch.setattr(lifecycle, "find_library", lambda name: looked_up.append(name))
    monkeypatch.setattr(lifecycle, "_LIBC", [])
    services.tune_malloc()
    assert lifecycle.libc().getpid() == os.getpid()  # what mark_parent loads before the workers' fork
    assert looked_up == []
