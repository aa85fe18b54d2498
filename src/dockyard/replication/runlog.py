"""A run's artifact lines (`replication_artifacts`): written in batches, not a transaction each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from dockyard.db.base import utcnow
from dockyard.replication.interfaces import ArtifactResult, Counters
from dockyard.replication.models import ReplicationArtifactRow

FLUSH_SECONDS = 1.0  # a running run's artifact lines are written at most about this late
FLUSH_ARTIFACTS = 200  # or once this many wait

Finished = tuple[ArtifactResult, datetime]  # an artifact's outcome and when it ended


def insert_artifacts(connection: Any, run_id: int, results: Sequence[Finished]) -> None:
    if not results:
        return
    connection.execute(
        insert(ReplicationArtifactRow),
        [
            {
                "run_id": run_id,
                "source": result.source[:512],
                "destination": result.destination[:512],
                "digest": result.digest,
                "status": result.status.value,
                "blobs": result.blobs,
                "bytes": result.bytes,
                "error": result.error,
                "finished_at": at,
            }
            for result, at in results
        ],
    )


class ArtifactLog:
    """A run's artifact outcomes on their way to its record: written together, FLUSH_SECONDS or
    FLUSH_ARTIFACTS apart, and the rest with the run's end: a write transaction per artifact (each
    with its WAL flush on SQLite) was 100 commits for a run of 100 images, on the run's main thread.
    While the run goes its record is at most about a second behind; a worker killed midway loses at
    most that second's lines (the next attempt finds what arrived anyway)."""

    def __init__(
        self, write: Callable[[list[Finished], Counters], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._write = write  # (the outcomes, the run's counters after them): one transaction
        self._clock = clock
        self._pending: list[Finished] = []
        self._written = clock()
        self._lock = threading.Lock()

    def add(self, result: ArtifactResult, counters: Counters) -> None:
        with self._lock:
            self._pending.append((result, utcnow()))
            due = len(self._pending) >= FLUSH_ARTIFACTS or self._clock() - self._written >= FLUSH_SECONDS
            if not due:
                return
            pending, self._pending = self._pending, []
            self._written = self._clock()
        self._write(pending, counters)

    def take(self) -> list[Finished]:
        """What is not written yet, for the run's last write."""
        with self._lock:
            pending, self._pending = self._pending, []
            return pending
