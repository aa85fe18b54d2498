"""Pull events, off the hot path: a manifest or blob GET appends its event to a list in memory
(`PullEvents.note`, no I/O); a daemon thread writes what accumulated to the outbox every `interval`
seconds, in one transaction. An outbox row per pull, written before the answer as pushes are, would put
a database write (about a millisecond) on every pull, most of which are otherwise answered from cache
with no write at all. The price: a process killed outright (not stopped: `close()` writes the rest)
loses at most its last `interval` of pull events, as registry:2 loses its in-memory queue on a restart.
"""

from __future__ import annotations

import logging
import threading

from dockyard.coordination.periodic import PeriodicWriter
from dockyard.webhooks.interfaces import Event, EventRecorder

log = logging.getLogger("dockyard.webhooks")
DEFAULT_INTERVAL = 1.0  # seconds: how late a pull event may reach the outbox, and what a kill may lose
# Events waiting past this many (the database down for a long time) are dropped, oldest first, so an
# outage cannot grow the process without bound.
MAX_PENDING = 50_000


class PullEvents(PeriodicWriter):
    """Pull events, written to `outbox` in batches. One per worker process; `note` is safe from any
    thread and from async code. The thread starts with the first event, so one built before a fork
    (or never used) runs none."""

    thread_name = "notification-pulls"

    def __init__(self, outbox: EventRecorder, interval: float = DEFAULT_INTERVAL) -> None:
        self.outbox = outbox
        super().__init__(interval)

    def _init_state(self) -> None:
        super()._init_state()
        self._pending: list[Event] = []
        self._lock = threading.Lock()

    def note(self, event: Event) -> None:
        """One pull. A list append; the thread writes it within `interval`."""
        with self._lock:
            self._pending.append(event)
            overflow = len(self._pending) - MAX_PENDING
            if overflow > 0:
                del self._pending[:overflow]
                self.dropped += overflow
        self._noted()

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
