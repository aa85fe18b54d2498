"""A SIGTERM that lands while a worker's uvloop does not listen still reaches Granian's handler
(app/loop_signals.py): before the lifespan's run, between two runs, in a run's last moments. Without it
the worker did not stop and serve killed it after 10 s. Each case in a process of its own: signal
handlers, the wakeup fd and loops are the process's. (As the second run starts, a window no script can
hit on its own: tests/integration/test_serve_stop.py, under strace.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.db_independent

WORKER_LIKE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time
    import uvloop

    when, kept = sys.argv[1], sys.argv[2] == "kept"
    if kept:  # the module alone, not the app package it sits in (~2 s of CPU to import)
        import importlib.util, pathlib
        package = pathlib.Path(importlib.util.find_spec("dockyard").origin).parent
        spec = importlib.util.spec_from_file_location("loop_signals", package / "app" / "loop_signals.py")
        loop_signals = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loop_signals)
        hear_stop_signals, note_stop_signals = loop_signals.hear_stop_signals, loop_signals.note_stop_signals
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    if kept:
        note_stop_signals()  # as worker_app, last
    stopped = []
    loop.add_signal_handler(signal.SIGTERM, stopped.append, "stop")  # as Granian's set_loop_signals

    def stop_now():
        os.kill(os.getpid(), signal.SIGTERM)

    def stop_late():  # a timer of the run's last iteration: libuv runs timers after its last poll
        loop.call_later(0.001, stop_now)
        time.sleep(0.005)  # so it is due by then

    if when == "before":  # the loop has not run yet
        stop_now()

    async def lifespan():
        if kept:
            hear_stop_signals()
        if when == "end":  # two iterations on, the one in which run_until_complete stops the loop
            loop.call_soon(loop.call_soon, stop_late)

    loop.run_until_complete(lifespan())
    if when == "between":  # after the lifespan, before serving
        stop_now()

    async def serve():  # a heard signal is handled within a few ms
        for _ in range(50):
            if stopped:
                return
            await asyncio.sleep(0.01)

    loop.run_until_complete(serve())
    print("stopped" if stopped else "still running")
    """
)

WINDOWS = ["before", "between", "end"]


def run(when: str, case: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WORKER_LIKE, when, case],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("when", WINDOWS)
def test_a_stop_while_the_loop_does_not_listen_reaches_the_handler(when: str) -> None:
    assert run(when, "kept") == "stopped"


@pytest.mark.parametrize("when", WINDOWS)
def test_uvloop_alone_loses_it(when: str) -> None:
    """What the module works around: if this fails, uvloop keeps such signals now and
    app/loop_signals.py may go."""
    assert run(when, "lost") == "still running"
