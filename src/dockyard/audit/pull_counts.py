"""Pulls in the audit log as counts per (hour, manifest, principal), added in batches off the hot path.

A row per manifest GET made every read a database write and grew the audit log by ~300 bytes a pull
(about 210 GiB in 90 days at 100 pulls/s). `PullCounter.count` only adds 1 to a dict entry; a daemon
thread adds what accumulated to `audit_pull_counts` every `interval` seconds, one
INSERT ... ON CONFLICT DO UPDATE per batch, so worker processes and nodes counting the same key add
up without coordination. What a process counted since its last batch is lost if it is killed (not
stopped: `close()` writes it), so a `kill -9` loses at most `interval` seconds of its pull counts.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ARRAY, BigInteger, Connection, DateTime, String, Table, bindparam, func, select
from sqlalchemy.sql.dml import Insert

from dockyard.audit import models
from dockyard.audit.interfaces import ActorKind
from dockyard.coordination.periodic import PeriodicWriter
from dockyard.db.base import utcnow
from dockyard.db.dialect import insert_for
from dockyard.db.session import Database
from dockyard.errors import ReadOnly, StorageFull

log = logging.getLogger("dockyard.audit")

_TABLE = cast(Table, models.AuditPullCountRow.__table__)
_KEY_COLUMNS = ["hour", "resource_name", "actor", "actor_kind"]
DEFAULT_INTERVAL = 5.0  # seconds; what a killed worker process may lose
# Counts whose write failed wait for the next batch; past this many keys the oldest are dropped, so a
# long database outage cannot grow the process without bound.
MAX_CARRIED = 100_000
RESOURCE_NAME, ACTOR = models.RESOURCE_NAME_LENGTH, models.ACTOR_LENGTH

Key = tuple[datetime, str, str, str]  # (hour, resource name, actor, actor kind)


@dataclass(slots=True)
class _Tally:
    pulls: int
    client_ip: str | None


def to_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class PullCounter(PeriodicWriter):
    """Counts pulls in memory and adds them to the database in batches. One per worker process.

    `count` is safe from any thread and from async code. The thread starts with the first count, so a
    counter built before a fork (or never used) runs none.
    """

    thread_name = "audit-pull-counter"

    def __init__(
        self, database: Database, interval: float = DEFAULT_INTERVAL, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.database = database
        self._clock = clock
        super().__init__(interval)  # dropped: pulls whose count was given up after failed writes

    def _init_state(self) -> None:
        super()._init_state()
        self._pending: dict[Key, _Tally] = {}
        self._pending_lock = threading.Lock()
        self._carried: dict[Key, _Tally] = {}  # from a batch that failed

    def count(self, resource_name: str, actor: str, actor_kind: ActorKind, client_ip: str | None) -> None:
        """One pull of `resource_name` ("repo@sha256:...") by the principal, now. O(1), no I/O."""
        key = (to_hour(self._clock()), resource_name, actor, str(actor_kind))
        with self._pending_lock:
            tally = self._pending.get(key)
            if tally is None:
                self._pending[key] = _Tally(1, client_ip)
            else:
                tally.pulls += 1
                tally.client_ip = client_ip
        self._noted()

    @property
    def pending(self) -> int:
        """Pulls counted and not yet written."""
        with self._pending_lock:
            waiting = sum(tally.pulls for tally in self._pending.values())
        return waiting + sum(tally.pulls for tally in self._carried.values())

    def flush(self) -> int:
        """Add what was counted since the last batch to the database; returns how many rows the batch
        touched (0 when there was nothing, or the write failed: then the counts wait for the next)."""
        with self._flush_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, {}
            batch, self._carried = self._carried, {}
            for (hour, resource_name, actor, actor_kind), tally in pending.items():
                # Cut to the columns' widths here, so two keys that differ only beyond them are one
                # row of the batch (PostgreSQL refuses to update a row twice in one statement).
                key = (hour, _clean(resource_name, RESOURCE_NAME), _clean(actor, ACTOR), actor_kind)
                _merge(batch, key, tally)
            if not batch:
                return 0
            try:
                with self.database.write() as connection:
                    _add(connection, batch)
            except Exception as exc:  # the DB is down, busy or full: keep the counts for the next batch
                full = isinstance(exc, StorageFull)
                if not isinstance(exc, ReadOnly):  # db.readonly: kept for when the switch goes off
                    reason = " (storage is full)" if full else ""
                    log.warning(
                        "could not add %d pull counts to the audit log%s; will retry",
                        len(batch),
                        reason,
                        exc_info=not full,
                    )
                self._carry(batch)
                return 0
            return len(batch)

    # --- internals ----------------------------------------------------------------------------
    def _carry(self, batch: dict[Key, _Tally]) -> None:
        for key, tally in batch.items():
            _merge(self._carried, key, tally)
        dropped = 0
        while len(self._carried) > MAX_CARRIED:
            dropped += self._carried.pop(next(iter(self._carried))).pulls
        if dropped:
            self.dropped += dropped
            log.warning("audit pull counts: too many waiting to be written; %d pulls dropped", dropped)


def _merge(into: dict[Key, _Tally], key: Key, tally: _Tally) -> None:
    known = into.get(key)
    if known is None:
        into[key] = _Tally(tally.pulls, tally.client_ip)
    else:
        known.pulls += tally.pulls
        known.client_ip = tally.client_ip or known.client_ip


def _add(connection: Connection, batch: dict[Key, _Tally]) -> None:
    # In key order, so two processes adding overlapping batches lock the rows in the same order on
    # PostgreSQL and cannot deadlock.
    rows = [
        {
            "hour": hour,
            "resource_name": resource_name,
            "actor": actor,
            "actor_kind": actor_kind,
            "client_ip": models.clean_text(tally.client_ip, models.IP_LENGTH),
            "pulls": tally.pulls,
        }
        for (hour, resource_name, actor, actor_kind), tally in sorted(batch.items())
    ]
    if connection.dialect.name == "postgresql":  # the batch in one statement, as arrays (_ADD_ALL)
        arrays = {f"counted_{column}": [row[column] for row in rows] for column in _COLUMNS}
        connection.execute(_add_all(), arrays)
        return
    statement = insert_for(connection.dialect.name, _TABLE)
    statement = statement.on_conflict_do_update(
        index_elements=_KEY_COLUMNS,
        set_={
            "pulls": _TABLE.c.pulls + statement.excluded.pulls,
            "client_ip": statement.excluded.client_ip,
        },
    )
    connection.execute(statement, rows)


@functools.cache  # built on first use: the PostgreSQL dialect's module is not imported on SQLite
def _add_all() -> Insert:
    """PostgreSQL: INSERT ... SELECT FROM unnest(<the batch's columns as arrays>) ON CONFLICT DO UPDATE.
    An executemany runs the upsert once per row in the server (~30-60 µs of CPU a row here, dockyard's
    and PostgreSQL's; at 50,000 repositories read at random almost every manifest GET adds a row);
    the rows come out of unnest in the arrays' order, the key order `_add` sorts them in."""
    from sqlalchemy.dialects import postgresql

    types: dict[str, Any] = {
        "hour": DateTime(timezone=True),
        "resource_name": String,
        "actor": String,
        "actor_kind": String,
        "client_ip": String,
        "pulls": BigInteger,
    }
    counted = (
        func.unnest(*(bindparam(f"counted_{column}", type_=ARRAY(types[column])) for column in _COLUMNS))
        .table_valued(*_COLUMNS)
        .render_derived(name="counted")
    )
    statement = postgresql.insert(_TABLE).from_select(
        list(_COLUMNS), select(*(counted.c[column] for column in _COLUMNS))
    )
    return statement.on_conflict_do_update(
        index_elements=_KEY_COLUMNS,
        set_={"pulls": _TABLE.c.pulls + statement.excluded.pulls, "client_ip": statement.excluded.client_ip},
    )


_COLUMNS = ("hour", "resource_name", "actor", "actor_kind", "client_ip", "pulls")


def _clean(value: str, length: int) -> str:
    return models.clean_text(value, length) or ""
