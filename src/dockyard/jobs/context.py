"""The JobContext a handler gets: log lines and progress are buffered and written at most about once a
second (with the lease renewal), and `check_cancelled()` asks the DB at most once a second."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs import claims
from dockyard.jobs.claims import Claimed
from dockyard.jobs.interfaces import JobCancelled, JobTimedOut

log = logging.getLogger("dockyard.jobs")
SYNC_SECONDS = 1.0
MAX_LINE = 4000  # characters kept of one log line


class RunningJob:
    def __init__(
        self,
        db: Database,
        claimed: Claimed,
        *,
        timeout: timedelta,
        lease: timedelta,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self._db = db
        self.claimed = claimed
        self._lease = lease
        self._deadline = time.monotonic() + timeout.total_seconds()
        self._timeout = timeout
        self._on_progress = on_progress
        self._lock = threading.Lock()  # the handler's thread and the runner's heartbeat both sync
        self._lines: list[tuple[datetime, str]] = []
        self._progress: tuple[int, int | None] = (0, None)
        self._progress_dirty = False
        self._last_sync = time.monotonic()
        self._last_renewal = time.monotonic()
        self.lost = False  # the lease went to another worker: stop, write nothing more
        self.cancel_requested = False

    # --- JobContext ---------------------------------------------------------------------------
    @property
    def job_id(self) -> int:
        return self.claimed.id

    @property
    def params(self) -> Mapping[str, Any]:
        return self.claimed.params

    def log(self, line: str) -> None:
        log.info("job %d (%s): %s", self.claimed.id, self.claimed.kind, line)
        with self._lock:
            self._lines.append((utcnow(), line[:MAX_LINE]))

    def progress(self, done: int, total: int | None = None) -> None:
        with self._lock:
            self._progress = (int(done), None if total is None else int(total))
            self._progress_dirty = True
        if self._on_progress is not None:
            self._on_progress(int(done), total)

    def check_cancelled(self) -> None:
        if time.monotonic() - self._last_sync >= SYNC_SECONDS:
            self.sync()
        if self.lost:
            raise JobCancelled(f"job {self.claimed.id}: this worker's lease was taken over")
        if self.cancel_requested:
            raise JobCancelled(f"job {self.claimed.id} was cancelled")
        if time.monotonic() > self._deadline:
            raise JobTimedOut(f"job {self.claimed.id} ran past its timeout of {self._timeout}")

    # --- the runner's side --------------------------------------------------------------------
    def sync_if_due(self) -> None:
        """The dispatcher's heartbeat, each round: a sync only when the handler has not synced for
        SYNC_SECONDS (it calls no check_cancelled) or the lease is due for renewal; else no query.
        A sync every round was 15-20% of the job runner's CPU during a replication run at a 100 ms poll."""
        now = time.monotonic()
        renewal_due = now - self._last_renewal >= self._lease.total_seconds() / 3
        if renewal_due or now - self._last_sync >= SYNC_SECONDS:
            self.sync()

    def sync(self, renew: bool = False) -> None:
        """Write buffered lines and progress, renew the lease when due (or `renew`), read cancel."""
        with self._lock:
            if self.lost:
                return
            now = time.monotonic()
            renewing = renew or now - self._last_renewal >= self._lease.total_seconds() / 3
            lines, self._lines = self._lines, []
            progress = self._progress if self._progress_dirty else None
            self._progress_dirty = False
            try:
                state = claims.sync(
                    self._db,
                    self.claimed,
                    lease=self._lease if renewing else None,
                    progress=progress,
                    lines=lines,
                )
            except Exception:
                log.exception("job %d: could not reach the database to renew its lease", self.claimed.id)
                self._lines = lines + self._lines
                self._progress_dirty = self._progress_dirty or progress is not None
                return
            self._last_sync = now
            if renewing:
                self._last_renewal = now
            self.lost = not state.alive
            self.cancel_requested = state.cancel_requested

    def take_pending(self) -> tuple[list[tuple[datetime, str]], tuple[int, int | None]]:
        """The lines not yet written and the last progress, for the final write with the outcome."""
        with self._lock:
            lines, self._lines = self._lines, []
            return lines, self._progress
