"""When each manifest was last pulled, recorded off the hot path.

Manifest GET by tag is served from a cache at tens of thousands of requests a second, so a pull
must not cost a DB write. `PullRecorder.note` only puts (repository, digest) into a dict; a daemon
thread writes what accumulated in one batched UPDATE per interval. Times are kept to the minute
(what a listing shows), and an UPDATE only ever moves a time forward, so several worker processes
and nodes writing the same rows agree without coordination.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ARRAY, DateTime, String, bindparam, func, or_, select, update
from sqlalchemy.orm import aliased

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import ReadOnly, StorageFull
from dockyard.registry.models import Manifest, Repository

log = logging.getLogger("dockyard.registry.pulls")

Key = tuple[str, str]  # (repository name, manifest digest)

# Keys whose write failed wait for the next flush; past this many the oldest are dropped, so a
# long DB outage cannot grow the process without bound (the next pull notes them again).
MAX_CARRIED = 100_000

# Parameter names must differ from the table's column names (SQLAlchemy reserves those for SET).
_UPDATE = (
    update(Manifest)
    .where(
        Manifest.repository_id
        == select(Repository.id).where(Repository.name == bindparam("pulled_repository")).scalar_subquery(),
        Manifest.digest == bindparam("pulled_digest"),
        or_(Manifest.last_pulled_at.is_(None), Manifest.last_pulled_at < bindparam("pulled_at")),
    )
    .values(last_pulled_at=bindparam("pulled_at"))
)


# PostgreSQL: the whole batch in one statement, its keys as three arrays. Row by row (an executemany,
# one execution per row in the server) a row cost ~40-60 µs of CPU here, dockyard's and PostgreSQL's
# together; at 50,000 repositories read at random almost every manifest GET adds one. The rows are
# locked in id order before they are updated, as the executemany's key order did: two workers (or
# nodes) flushing overlapping batches at once wait for each other instead of deadlocking; a row
# another flush moved meanwhile is checked again once it is locked (never moved back).
_pulled = (
    func.unnest(
        bindparam("pulled_repositories", type_=ARRAY(String)),
        bindparam("pulled_digests", type_=ARRAY(String)),
        bindparam("pulled_moments", type_=ARRAY(DateTime(timezone=True))),
    )
    .table_valued("repository", "digest", "moment")
    .render_derived(name="pulled")
)
_target = aliased(Manifest, name="target")
_LOCKED = (
    select(_target.id, _pulled.c.moment)
    .select_from(_pulled)
    .join(Repository, Repository.name == _pulled.c.repository)
    .join(_target, (_target.repository_id == Repository.id) & (_target.digest == _pulled.c.digest))
    .where(or_(_target.last_pulled_at.is_(None), _target.last_pulled_at < _pulled.c.moment))
    .order_by(_target.id)
    .with_for_update(key_share=True, of=_target)
    .subquery("locked")
)
_UPDATE_ALL = update(Manifest).where(Manifest.id == _LOCKED.c.id).values(last_pulled_at=_LOCKED.c.moment)


def to_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class PullRecorder:
    """Notes pulls in memory and writes them in batches. One per worker process.

    `note` is safe to call from any thread. The flushing thread starts with the first note, so a
    recorder built before a fork (or never used) runs no thread.
    """

    def __init__(self, db: Database, interval: float = 5.0, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._interval = interval
        self._clock = clock
        self._pending: dict[Key, None] = {}
        self._pending_lock = threading.Lock()
        self._carried: dict[Key, datetime] = {}  # from a flush that failed, with their time
        # What this process already wrote for the current minute: pulling the same tag all day
        # sends one UPDATE per minute, not one per interval.
        self._written: dict[Key, datetime] = {}
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, repository: str, digest: str) -> None:
        """Record that `digest` in `repository` was pulled now. O(1), no I/O."""
        with self._pending_lock:
            self._pending[(repository, digest)] = None
        if self._thread is None:
            self._start()

    def flush(self) -> int:
        """Write what was noted since the last flush. Returns how many rows were sent to the DB."""
        with self._flush_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, {}
            minute = to_minute(self._clock())
            batch = dict(self._carried)
            self._carried = {}
            for key in pending:
                batch[key] = minute
            if any(moment != minute for moment in self._written.values()):
                self._written = {k: m for k, m in self._written.items() if m == minute}
            batch = {key: moment for key, moment in batch.items() if self._written.get(key) != moment}
            if not batch:
                return 0
            try:
                self._write(batch)
            except Exception as exc:  # the DB is down, busy or full: keep the times for the next flush
                full = isinstance(exc, StorageFull)
                reason = " (storage is full)" if full else ""
                if not isinstance(exc, ReadOnly):  # db.readonly: kept for when the switch goes off
                    log.warning(
                        "could not record %d pull times%s; will retry", len(batch), reason, exc_info=not full
                    )
                self._carry(batch)
                return 0
            for key, moment in batch.items():
                if moment == minute:
                    self._written[key] = moment
            return len(batch)

    def close(self) -> None:
        """Stop the thread and write what is left. Call before the DB is disposed."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._interval + 5)
        self.flush()

    # --- internals ----------------------------------------------------------------------------
    def _start(self) -> None:
        with self._flush_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="pull-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # never let the thread die: later pulls still need recording
                log.exception("pull recorder flush failed")

    def _write(self, batch: dict[Key, datetime]) -> None:
        # In key order: on PostgreSQL each UPDATE locks its row until the commit, and two worker
        # processes (or nodes) writing overlapping batches in pull order deadlocked, one of them
        # waiting a second (deadlock_timeout) to fail and send its whole batch again later.
        keys = sorted(batch.items())
        with self._db.write() as connection:
            if connection.dialect.name == "postgresql":  # one statement (_UPDATE_ALL: its own order)
                values = {
                    "pulled_repositories": [repository for (repository, _), _ in keys],
                    "pulled_digests": [digest for (_, digest), _ in keys],
                    "pulled_moments": [moment for _, moment in keys],
                }
                connection.execute(_UPDATE_ALL, values)
                return
            rows = [
                {"pulled_repository": repository, "pulled_digest": digest, "pulled_at": moment}
                for (repository, digest), moment in keys
            ]
            connection.execute(_UPDATE, rows)

    def _carry(self, batch: dict[Key, datetime]) -> None:
        for key, moment in batch.items():
            if key not in self._carried or self._carried[key] < moment:
                self._carried[key] = moment
        while len(self._carried) > MAX_CARRIED:
            del self._carried[next(iter(self._carried))]
