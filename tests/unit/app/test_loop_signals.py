"""A SIGTERM that lands between two runs of a worker's uvloop (after the lifespan, before serving) still
reaches Granian's handler (app/loop_signals.py): without it the worker did not stop and serve killed it
after 10 s. Each case in a process of its own: signal handlers and loops are the process's."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.db_independent

WORKER_LIKE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import uvloop
    from dockyard.app.loop_signals import keep_stop_signals_between_runs

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    stopped = []
    loop.add_signal_handler(signal.SIGTERM, stopped.append, "stop")  # as Granian's set_loop_signals

    async def lifespan():
        if sys.argv[1] == "kept":
            keep_stop_signals_between_runs()

    loop.run_until_complete(lifespan())
    os.kill(os.getpid(), signal.SIGTERM)  # between the runs, as serve's stop right after a start

    async def serve():
        for _ in range(200):
            if stopped:
                return
            await asyncio.sleep(0.01)

    loop.run_until_complete(serve())
    print("stopped" if stopped else "still running")
    """
)


def run(case: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WORKER_LIKE, case], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_a_stop_between_the_loops_runs_reaches_the_handler() -> None:
    assert run("kept") == "stopped"


def test_uvloop_alone_loses_it() -> None:
    """What the module works around: if this fails, uvloop keeps signals between runs now and
    app/loop_signals.py can go."""
    assert run("lost") == "still running"
