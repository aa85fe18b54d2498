"""The audit log: batched writes off the request path, queries (audit/listing.py), retention purge.

Every statement here is plain SQLAlchemy Core that runs unchanged on SQLite and PostgreSQL; the purge
deletes by id in chunks so it never holds the write lock for long. Pulls are not written here but
counted per hour (audit/pull_counts.py); queries and the purge cover both tables.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select

from dockyard.audit import models
from dockyard.audit.interfaces import DEFAULT_SORT, AuditEvent, AuditFilter, AuditPage
from dockyard.audit.listing import HOUR, query_log
from dockyard.config.durations import parse_duration
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import ReadOnly, StorageFull

log = logging.getLogger("dockyard.audit")

_TABLE = cast(Table, models.AuditEventRow.__table__)
_COUNTS = cast(Table, models.AuditPullCountRow.__table__)
MAX_DETAIL_CHARS = 8192  # a detail bigger than this as JSON is kept as a cut-down text
PURGE_CHUNK = 5000


class AuditLog:
    """Records events (batched, or in the caller's transaction) and answers queries over them.

    `record` appends to an in-memory queue; a background thread, started on first use, writes the
    queue every `flush_interval` seconds, or as soon as `batch_size` events wait. If the database
    cannot be reached the events stay queued and are retried; beyond `max_pending` the oldest are
    dropped (and counted in `dropped`) so memory stays bounded. `close()` writes what is left;
    call it at shutdown, or the last second of events is lost with the process.
    """

    def __init__(
        self,
        database: Database,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_pending: int = 100_000,
    ) -> None:
        if flush_interval <= 0 or batch_size < 1 or max_pending < batch_size:
            raise ValueError("need flush_interval > 0 and 1 <= batch_size <= max_pending")
        self.database = database
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.dropped = 0
        self._dropped_reported = 0
        self._init_state()
        # A forked child must not write the parent's queued events a second time, nor believe the
        # parent's writer thread runs for it.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _init_state(self) -> None:
        self._pending: deque[AuditEvent] = deque()
        self._lock = threading.Lock()  # guards _pending, _closed, _thread
        self._write_lock = threading.Lock()  # one writer at a time, so flush() waits for a write in flight
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- recording ----------------------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        """Queue `event` for the background writer. No I/O; safe from any thread and from async code."""
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                if len(self._pending) >= self.max_pending:
                    self._pending.popleft()
                    self.dropped += 1
                self._pending.append(event)
                full = len(self._pending) >= self.batch_size
                if self._thread is None:
                    self._start_writer()
        if closed:  # after shutdown began: write it now rather than lose it
            self._write_or_requeue([event])
        elif full:
            self._wake.set()

    def record_now(self, connection: Connection, event: AuditEvent) -> None:
        """Insert `event` on `connection`, inside the caller's transaction (management changes)."""
        connection.execute(insert(_TABLE), [_row(event)])

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write every event recorded before this call; raises if the database refuses them (they
        stay queued for the next attempt). Blocks: never call it from async code."""
        if not self._write_pending():
            raise RuntimeError(f"audit log: {self.pending} events could not be written; see the log")

    def close(self) -> None:
        """Stop the writer and write what is queued. Later `record` calls write synchronously."""
        with self._lock:
            self._closed = True
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        if not self._write_pending():
            log.error("audit log closed with %d events that could not be written", self.pending)

    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._run_writer, name="audit-log-writer", daemon=True)
        self._thread.start()

    def _run_writer(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._write_pending()
            except Exception:  # never let the writer die: the queue would grow until dropped
                log.exception("audit log writer failed")
            if stopping:
                return

    def _write_pending(self) -> bool:
        """Write the queue in batches; False when the database refused a batch (it was requeued)."""
        with self._write_lock:
            if self.dropped > self._dropped_reported:
                log.warning("audit log queue full: %d events dropped", self.dropped - self._dropped_reported)
                self._dropped_reported = self.dropped
            while True:
                with self._lock:
                    count = min(len(self._pending), self.batch_size)
                    batch = [self._pending.popleft() for _ in range(count)]
                if not batch:
                    return True
                if not self._write_or_requeue(batch):
                    return False

    def _write_or_requeue(self, batch: list[AuditEvent]) -> bool:
        try:
            with self.database.write() as connection:
                connection.execute(insert(_TABLE), [_row(event) for event in batch])
            return True
        except Exception as exc:
            full = isinstance(exc, StorageFull)  # one line, no traceback, for as long as the disk is full
            reason = " (storage is full)" if full else ""
            if isinstance(exc, ReadOnly):  # db.readonly: kept for when the switch goes off, quietly
                log.debug("audit log: read-only, %d events kept", len(batch))
            else:
                log.warning(
                    "audit log: cannot write %d events%s, will retry", len(batch), reason, exc_info=not full
                )
            with self._lock:
                room = self.max_pending - len(self._pending)
                keep = batch[len(batch) - room :] if room < len(batch) else batch
                self.dropped += len(batch) - len(keep)
                self._pending.extendleft(reversed(keep))  # back at the front, in their order
            return False

    # --- reading ------------------------------------------------------------------------------

    def query(
        self,
        filters: AuditFilter | None = None,
        page: int = 1,
        page_size: int = 50,
        sort: str = DEFAULT_SORT,
    ) -> AuditPage:
        """One page of the events and hourly pull counts matching `filters`, ordered by `sort` ("key"
        ascending, "-key" descending; keys in SORT_KEYS): see listing.query_log."""
        with self.database.read() as connection:
            return query_log(connection, filters or AuditFilter(), page, page_size, sort)

    # --- retention ----------------------------------------------------------------------------

    def purge_older_than(self, age: timedelta | str, now: datetime | None = None) -> int:
        """Delete events older than `age` (a timedelta, or a duration such as settings.audit.retention:
        "2160h"), and hourly pull counts whose whole hour is; returns how many rows. Deletes in chunks
        so writers are never blocked for long."""
        if isinstance(age, str):
            age = timedelta(seconds=parse_duration(age))
        if age <= timedelta(0):
            raise ValueError("the retention age must be positive")
        cutoff = (now or utcnow()) - age
        events = _purge(self.database, _TABLE, _TABLE.c.occurred_at < cutoff)
        return events + _purge(self.database, _COUNTS, _COUNTS.c.hour <= cutoff - HOUR)


class CollectingRecorder:
    """An AuditRecorder that keeps events in a list: for tests of the code that records them."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def record_now(self, connection: Connection, event: AuditEvent) -> None:
        self.events.append(event)


def _purge(database: Database, table: Table, old: ColumnElement[bool]) -> int:
    purged = 0
    while True:
        oldest = select(table.c.id).where(old).limit(PURGE_CHUNK)
        with database.write() as connection:
            deleted = connection.execute(delete(table).where(table.c.id.in_(oldest))).rowcount
        purged += deleted
        if deleted < PURGE_CHUNK:
            return purged


def _reset_in_child(ref: weakref.ref[AuditLog]) -> None:
    audit_log = ref()
    if audit_log is not None:
        audit_log._init_state()


def _detail(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if detail is None:
        return None
    # Round-trip through JSON now, so a value the column cannot store (a set, a datetime) becomes text
    # here instead of failing the whole batch later.
    try:
        text = json.dumps(dict(detail), default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # keys that are not strings, or a cycle
        return {"unserialisable": True, "text": repr(detail)[:MAX_DETAIL_CHARS]}
    if len(text) > MAX_DETAIL_CHARS:
        return {"truncated": True, "text": text[:MAX_DETAIL_CHARS]}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "occurred_at": event.occurred_at,
        "actor": models.clean_text(event.actor, models.ACTOR_LENGTH) or "",
        "actor_kind": str(event.actor_kind),
        "client_ip": models.clean_text(event.client_ip, models.IP_LENGTH),
        "action": str(event.action),
        "resource_type": None if event.resource_type is None else str(event.resource_type),
        "resource_name": models.clean_text(event.resource_name, models.RESOURCE_NAME_LENGTH),
        "result": str(event.result),
        "detail": _detail(event.detail),
    }
