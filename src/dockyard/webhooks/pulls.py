"""Pull events, off the hot path: a manifest or blob GET appends its event to a list in memory
(`PullEvents.note`, no I/O); a daemon thread writes what accumulated to the outbox every `interval`
seconds, in one transaction. An outbox row per pull, written before the answer as pushes are, would put
a database write (about a millisecond) on every pull, most of which are otherwise answered from cache
with no write at all. The price: a process killed outright (not stopped: `close()` writes the rest)
loses at most its last `interval` of pull events, as registry:2 loses its in-memory queue on a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

from dockyard.webhooks.interfaces import Event, EventRecorder

log = logging.getLogger("dockyard.webhooks")
DEFAULT_INTERVAL = 1.0  # seconds: how late a pull event may reach the outbox, and what a kill may lose
# Events waiting past this many (the database down for a long time) are dropped, oldest first, so an
# outage cannot grow the process without bound.
MAX_PENDING = 50_000


class PullEvents:
    """Pull events, written to `outbox` in batches. One per worker process; `note` is safe from any
    thread and from async code. The thread starts with the first event, so one built before a fork
    (or never used) runs none."""

    def __init__(self, outbox: EventRecorder, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.outbox = outbox
        self.interval = interval
        self.dropped = 0
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _init_state(self) -> None:
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, event: Event) -> None:
        """One pull. A list append; the thread writes it within `interval`."""
        with self._lock:
            self._pending.append(event)
            overflow = len(self._pending) - MAX_PENDING
            if overflow > 0:
                del self._pending[:overflow]
                self.dropped += overflow
        if self._stop.is_set():  # after close (a request finishing during shutdown): write it now
            self.flush()
        elif self._thread is None:
            self._start()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write what waits to the outbox; how many events (0 when none, or the write failed: then they
        wait for the next batch)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self.outbox.record(batch)
            except Exception:  # the DB is down or busy: keep them for the next batch
                log.warning("could not record %d pull events; will retry", len(batch), exc_info=True)
                with self._lock:
                    self._pending[:0] = batch
                    overflow = len(self._pending) - MAX_PENDING
                    if overflow > 0:
                        del self._pending[:overflow]
                        self.dropped += overflow
                return 0
            return len(batch)

    def close(self) -> None:
        """Stop the thread and write what is left; later events are written at once."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 5)
        self.flush()

    def _start(self) -> None:
        with self._flush_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="notification-pulls", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # never let the thread die: later pulls still need recording
                log.exception("notification pull events failed")


def _reset_in_child(ref: weakref.ref[PullEvents]) -> None:
    events = ref()
    if events is not None:
        events._init_state()
