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
