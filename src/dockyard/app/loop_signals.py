"""SIGTERM and SIGINT are not lost between two runs of a worker's event loop.

Granian puts its stop handlers on the worker's loop (`loop.add_signal_handler`) before the ASGI
lifespan, runs the lifespan (`run_until_complete`), starts serving and then runs the loop again until
it stops. uvloop hears signals only while its loop runs: a signal that lands between the two runs is
noted by uvloop's Python-level handler but never dispatched, so Granian's handler does not run, the
worker does not stop, and serve kills it after its 10 s timeout (4 stops in 50 right after a start,
docs/benchmarks.md). asyncio's loop keeps its wakeup fd between runs and has no such gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def keep_stop_signals_between_runs() -> None:
    """Called on the worker's loop (in the lifespan, after the server put in its handlers): a stop
    signal that arrives while the loop is not running is sent again, to this process, as soon as the
    loop runs, when it hears it. Only where the signal's handler is this loop's own (uvloop's bound
    `__sighandler`): not on asyncio's loop, under a test client's thread, or for a handler of anyone
    else's."""
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        previous = signal.getsignal(number)
        if callable(previous) and getattr(previous, "__self__", None) is loop:
            signal.signal(number, _resend_when_idle(loop, previous))


def _resend_when_idle(loop: asyncio.AbstractEventLoop, previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        previous(signum, frame)
        if not loop.is_running():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is left to stop
                loop.call_soon_threadsafe(os.kill, os.getpid(), signum)

    return handler
