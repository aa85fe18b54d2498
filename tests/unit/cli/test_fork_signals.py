"""A stop signal sent to a process serve has just forked (a worker Granian stops as it starts them) stops
it, however soon after the fork it comes.

CPython's own after-fork step in a child clears the signals its C-level handler noted until then (lest one
meant for the parent be handled twice), so a signal that reached the child before that step was lost: the
worker served on and Granian killed it 10 s later. `hold_stop_signals_across_forks` keeps SIGTERM and
SIGINT blocked in the forking thread across each fork, so a signal sent meanwhile waits in the kernel
until the child lets it in, after that step.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.db_independent

FORKS = 20
SERVE_LIKE = textwrap.dedent(
    """
    import os, signal, sys, time
    from dockyard.cli.server import hold_stop_signals_across_forks

    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(3))  # as the Drainer's, in a worker
    if sys.argv[1] == "held":
        hold_stop_signals_across_forks()
    codes = []
    for _ in range(int(sys.argv[2])):
        pid = os.fork()
        if pid == 0:
            if signal.pthread_sigmask(signal.SIG_BLOCK, []):  # the child's mask is as it was
                os._exit(4)
            for _ in range(50):  # a handler runs here, between two sleeps
                time.sleep(0.002)
            os._exit(0)
        os.kill(pid, signal.SIGTERM)  # at once: the child has most likely not run yet
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print(" ".join(map(str, codes)))
    """
)


def exit_codes(mode: str) -> list[int]:
    """Each child's exit: 3 if its SIGTERM handler ran, 0 if it lived on, 4 if it kept a signal blocked."""
    done = subprocess.run(
        [sys.executable, "-c", SERVE_LIKE, mode, str(FORKS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [int(code) for code in done.stdout.split()]


def test_a_stop_sent_right_after_the_fork_reaches_the_child() -> None:
    assert exit_codes("held") == [3] * FORKS


def test_without_the_hold_cpython_loses_it() -> None:
    """What the hold works around, on the same script (a kill that comes before the child first runs
    is lost; nearly every one here): if this fails, CPython keeps such signals now."""
    assert 0 in exit_codes("plain")
