"""SIGTERM and SIGINT stop an HTTP worker whenever they land during its start.

Granian puts its stop handlers on the worker's loop (`loop.add_signal_handler`), runs the ASGI lifespan
(`run_until_complete`), starts serving and then runs the loop again until it stops. uvloop acts on a
signal only when its number reaches the loop's self-pipe through the wakeup fd, which is that pipe only
while the loop runs (from just after a run starts to just before it ends): a signal that lands outside
is noted by uvloop's Python-level handler and never acted on, so Granian's handler does not run, the
worker serves on and serve kills it after its 10 s timeout. That happened to stops landing before the
lifespan's run, between the two runs, and as the second run starts (docs/benchmarks.md, "A stop lost
as a worker's loop starts"). asyncio's loop keeps its wakeup fd between runs and has no such gap.

Two steps close it:

- `note_stop_signals`, in a worker of serve just before Granian puts in its handlers: a pipe of the
  worker's own becomes the wakeup fd, so a signal that lands while the loop's pipe is not the wakeup fd
  leaves its number there (uvloop puts this fd back at the end of each run);
- `hear_stop_signals`, in the lifespan, on the running loop: reads that pipe whenever the loop runs,
  and wraps uvloop's handler; either way each stop signal is raised again from inside the running loop,
  where the loop's pipe is the wakeup fd and uvloop hears it. The wrapper also covers a signal that
  reached the loop's pipe after the run's last look at it (the run ends, the pipe is closed unread).

Granian's stop handler must run once only, whatever comes (`note_stop_signals` sees to it): it sets the
worker's `WorkerSignal`, whose `set()` (Granian 2.8.9) sends on a channel of one place that only the
serving run reads, so a second `set()` before it (a stop heard twice during the lifespan: its own byte
and this module's signal raised again, or SIGINT from a terminal and serve's SIGTERM) blocks for good,
holding the GIL: the worker heard nothing more and serve killed it 10 s later (docs/benchmarks.md, "A
stop lost as a worker starts, the second kind").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_noted: list[int] = []  # the read end of the pipe `note_stop_signals` made the wakeup fd
_raising: set[int] = set()  # the stop signals this module is raising again just now


def note_stop_signals() -> None:
    """In an HTTP worker of serve (main thread), once the app is loaded, before the server puts in its
    loop's stop handlers: from now on a signal that lands while the loop does not listen is written to a
    pipe of this worker's own, for `hear_stop_signals` to act on. Until the server's handlers go in, the
    one serve's Drainer left (cli.server) stops the worker itself. And Granian's own stop handlers go in
    to run once only, however many stop signals come (the module's docstring)."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)  # kept open for good: uvloop puts it back
    _noted[:] = [read]
    import granian._signals  # loaded already: this is a worker of Granian's

    if not hasattr(granian._signals.set_loop_signals, "__wrapped__"):
        granian._signals.set_loop_signals = _stopping_once(granian._signals.set_loop_signals)


def _stopping_once(set_loop_signals: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Granian's `set_loop_signals` (which its worker imports as it starts, after this) on a view of the
    loop whose stop handlers run once between them, however many stop signals the loop hears."""

    def set_once(loop: Any) -> Any:
        return set_loop_signals(_StoppingOnce(loop))

    set_once.__wrapped__ = set_loop_signals  # type: ignore[attr-defined]
    return set_once


class _StoppingOnce:
    """The worker's loop as Granian's `set_loop_signals` sees it: what it asks for goes to the loop,
    the handlers it puts in wrapped so that the first call of any of them is the only one."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._stopped = False

    def add_signal_handler(self, number: int, callback: Callable[..., Any], *args: Any) -> None:
        def once(*called: Any) -> None:
            if not self._stopped:
                self._stopped = True
                callback(*called)

        self._loop.add_signal_handler(number, once, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def hear_stop_signals() -> None:
    """Called on the worker's loop (in the lifespan, after the server put in its handlers). The wrapper
    goes in only where a signal's handler is this loop's own (uvloop's bound `__sighandler`): not on
    asyncio's loop, under a test client's thread, or for a handler of anyone else's. The pipe is read
    where `note_stop_signals` made one (on asyncio's loop it gets nothing once the loop's handlers are
    in: that loop makes its own pipe the wakeup fd for good)."""
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        previous = signal.getsignal(number)
        if callable(previous) and getattr(previous, "__self__", None) is loop:
            signal.signal(number, _raised_again_in_loop(loop, previous))
    if _noted:
        loop.add_reader(_noted[0], _raise_noted, _noted[0])


def _raised_again_in_loop(loop: asyncio.AbstractEventLoop, previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        previous(signum, frame)
        if signum not in _raising:  # not the one raised again below: that one reached the loop
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is left to stop
                loop.call_soon_threadsafe(_raise_again, signum)

    return handler


def _raise_noted(read: int) -> None:
    """The signals that landed while the loop did not listen, each stop signal once."""
    with contextlib.suppress(BlockingIOError):
        for number in set(os.read(read, 512)):
            if number in STOP_SIGNALS:
                _raise_again(number)


def _raise_again(number: int) -> None:
    """Run by the loop, so while it runs: its pipe is the wakeup fd, and the signal's number reaches it
    (raise_signal delivers to this thread before it returns)."""
    _raising.add(number)
    try:
        signal.raise_signal(number)
    finally:
        _raising.discard(number)
