"""A batch in memory, written by a daemon thread every `interval` seconds: what the audit log's pull
counter and the notifications' pull events share, so that a pull (the hottest path) never writes to
the database itself."""

from __future__ import annotations

import logging
import os
import threading
import weakref

log = logging.getLogger("dockyard.coordination")


class PeriodicWriter:
    """Subclasses keep the batch (their state made in `_init_state`, after calling this one's), call
    `_noted()` after adding to it, and write it in `flush()` under `_flush_lock`. The thread starts with
    the first item, so a writer built before a fork (or never used) runs none; a forked child starts
    empty, so it never writes its parent's batch a second time. `close()` writes what is left; items
    noted after it are written at once."""

    thread_name = "periodic-writer"

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.dropped = 0  # items given up after failed writes (the subclass counts them)
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _init_state(self) -> None:
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 5)
        self.flush()

    def _noted(self) -> None:
        """After an item joined the batch: written now after `close()` (a request finishing during
        shutdown), else by the thread, started if it is not running yet."""
        if self._stop.is_set():
            self.flush()
        elif self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._flush_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # never let the thread die: later items still need writing
                log.exception("%s failed", self.thread_name)


def _reset_in_child(ref: weakref.ref[PeriodicWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._init_state()
