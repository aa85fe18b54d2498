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

from tests.support.processes import line_after

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


# Granian's own stop handler, from its set_loop_signals, as its worker puts it in: SIGTERM (serve's
# stop) and then SIGINT (Ctrl-C at a terminal, to the whole group) while the lifespan's run runs.
GRANIAN_LIKE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import granian._signals
    import uvloop

    kept, stops = sys.argv[1] == "kept", sys.argv[2:]
    if kept:
        import importlib.util, pathlib
        package = pathlib.Path(importlib.util.find_spec("dockyard").origin).parent
        spec = importlib.util.spec_from_file_location("loop_signals", package / "app" / "loop_signals.py")
        loop_signals = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loop_signals)
    heard = []

    def count(frame, event, arg):  # each run of Granian's handler, which sets its WorkerSignal
        if event == "call" and frame.f_code.co_name == "signal_handler":
            heard.append(frame.f_code.co_filename)

    sys.setprofile(count)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    if kept:
        loop_signals.note_stop_signals()  # as worker_app, last
    from granian._signals import set_loop_signals  # as Granian's worker, once the app is loaded

    stopping = set_loop_signals(loop)

    async def lifespan():
        if kept:
            loop_signals.hear_stop_signals()
        print("stopping", flush=True)
        for name in stops:
            os.kill(os.getpid(), getattr(signal, name))
        for _ in range(20):  # each stop heard by now
            await asyncio.sleep(0.005)

    loop.run_until_complete(lifespan())  # Granian serves next, and finds `stopping` set
    print("heard", len(heard), flush=True)
    """
)
START_TIMEOUT = 60.0  # the script's imports and loop, on a loaded machine
HANDLED_TIMEOUT = 30.0  # a lifespan that goes on ends within a second or so
HUNG_WAIT = 3.0  # a stuck one is given this long


def run_granian_like(case: str, stops: list[str], wait: float) -> str:
    """The script's last line: "heard N" (Granian's handler ran N times), or "hung" if it has not
    said it `wait` seconds after it sent its signals."""
    argv = [sys.executable, "-c", GRANIAN_LIKE, case, *stops]
    return line_after(argv, "stopping", START_TIMEOUT, wait) or "hung"


@pytest.mark.parametrize("stops", [["SIGTERM"], ["SIGTERM", "SIGINT"]], ids=["one stop", "two stops"])
def test_granians_stop_handler_runs_once_however_often_the_stop_comes(stops: list[str]) -> None:
    """Granian's handler sets its WorkerSignal, whose second set() before the serving run blocks for
    good (holding the GIL): the worker hung in its lifespan, and serve killed it 10 s later. One stop
    was heard twice as well, by uvloop and by the signal this module raises again."""
    assert run_granian_like("kept", stops, HANDLED_TIMEOUT) == "heard 1"


def test_granian_alone_hangs_on_a_second_stop() -> None:
    """What `note_stop_signals` works around: if this fails, Granian's WorkerSignal takes a second
    set() now, and `_stopping_once` may go."""
    assert run_granian_like("alone", ["SIGTERM", "SIGINT"], HUNG_WAIT) == "hung"
