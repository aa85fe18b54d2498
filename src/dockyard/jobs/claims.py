"""The runner's side of the jobs table: claim a job atomically, hold its lease, write its progress and
outcome, and take back jobs whose worker died.

Claiming is one transaction. On PostgreSQL the candidates are locked with `FOR UPDATE SKIP LOCKED` (two
nodes never wait on, or take, the same rows) and the per-kind running count is read under a transaction
advisory lock of that kind, so two nodes cannot both pass a concurrency limit. On SQLite a write
transaction is already exclusive (BEGIN IMMEDIATE), and the claim is a compare-and-set
(`UPDATE ... WHERE id = ? AND status = 'queued'`) whose row count says who won.

Every write a worker makes about a running job is guarded by its lease token (`lease_owner`): once
the lease expired and the job was taken back, the old worker can no longer log, report or finish it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, exists, func, insert, select, text, update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.models import JobLogRow, JobRow, JobScheduleRow

CANDIDATES = 32  # queued rows looked at per claim
_LOCK_PREFIX = 0x646F636B << 32  # "dock": the advisory lock keys of the kinds' counters


@dataclass
class Claimed:
    id: int
    kind: str
    params: dict[str, Any]
    attempts: int
    max_attempts: int
    owner: str


@dataclass(frozen=True)
class SyncResult:
    alive: bool  # this worker still holds the lease
    cancel_requested: bool


def claim_next(db: Database, limits: Mapping[str, int], owner: str, lease: timedelta) -> Claimed | None:
    """Claim the oldest due job of one of `limits`' kinds whose kind is under its limit (None if none)."""
    now = utcnow()
    with db.write() as connection:
        query = (
            select(JobRow.id, JobRow.kind)
            .where(JobRow.status == "queued", JobRow.run_after <= now, JobRow.kind.in_(sorted(limits)))
            .order_by(JobRow.run_after, JobRow.id)
            .limit(CANDIDATES)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        candidates = connection.execute(query).all()
        _lock_kinds(connection, {candidate.kind for candidate in candidates})
        full: set[str] = set()
        for candidate in candidates:
            if candidate.kind in full:
                continue
            if not _under_limit(connection, candidate.kind, limits[candidate.kind], now):
                full.add(candidate.kind)
                continue
            claimed = _take(connection, candidate.id, owner, now + lease, now)
            if claimed is not None:
                return claimed
    return None


def claim_job(
    db: Database, job_id: int, limits: Mapping[str, int], owner: str, lease: timedelta
) -> Claimed | None:
    """Claim this job if it is still queued (due or not) and its kind is under its limit."""
    now = utcnow()
    with db.write() as connection:
        query = select(JobRow.id, JobRow.kind).where(JobRow.id == job_id, JobRow.status == "queued")
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = connection.execute(query).first()
        if row is None or row.kind not in limits:
            return None
        _lock_kinds(connection, {row.kind})
        if not _under_limit(connection, row.kind, limits[row.kind], now):
            return None
        return _take(connection, row.id, owner, now + lease, now)


def _lock_kinds(connection: Connection, kinds: set[str]) -> None:
    """PostgreSQL: lock the kinds' running counts until the commit, so a second node counting the same
    kind waits and then sees this claim. Always in the same order: two claims cannot deadlock."""
    if connection.dialect.name != "postgresql":
        return  # SQLite's write transaction is exclusive already
    for kind in sorted(kinds):
        key = _LOCK_PREFIX | zlib.crc32(kind.encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _under_limit(connection: Connection, kind: str, limit: int, now: datetime) -> bool:
    running = connection.scalar(
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.kind == kind, JobRow.status == "running", JobRow.lease_expires_at > now)
    )
    return (running or 0) < limit


def _take(
    connection: Connection, job_id: int, owner: str, expires: datetime, now: datetime
) -> Claimed | None:
    taken = connection.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == "queued")
        .values(
            status="running",
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=JobRow.attempts + 1,
            started_at=now,
            finished_at=None,
        )
    )
    if taken.rowcount != 1:
        return None
    row = connection.execute(
        select(JobRow.kind, JobRow.params, JobRow.attempts, JobRow.max_attempts).where(JobRow.id == job_id)
    ).one()
    return Claimed(job_id, row.kind, dict(row.params or {}), row.attempts, row.max_attempts, owner)


def has_due_work(db: Database, kinds: Iterable[str]) -> bool:
    """A cheap read before the write transaction of a claim: is any job due, or any lease expired?"""
    now = utcnow()
    due = (JobRow.status == "queued") & (JobRow.run_after <= now) & JobRow.kind.in_(sorted(kinds))
    expired = (JobRow.status == "running") & (JobRow.lease_expires_at < now)
    with db.read() as connection:
        return bool(connection.scalar(select(exists().where(due | expired))))


def next_due_at(db: Database, kinds: Iterable[str], schedules: bool) -> datetime | None:
    """When the next job of `kinds` queued to run later (a retry's backoff, a delayed delivery), or
    the next enabled schedule of them (with `schedules`), comes due; None when none will. Only times
    after now: a due job that cannot be claimed yet (its kind at its limit) is not waited for here."""
    now = utcnow()
    names = sorted(kinds)
    with db.read() as connection:
        times = [
            connection.scalar(
                select(func.min(JobRow.run_after)).where(
                    JobRow.status == "queued", JobRow.run_after > now, JobRow.kind.in_(names)
                )
            )
        ]
        if schedules:
            times.append(
                connection.scalar(
                    select(func.min(JobScheduleRow.next_run_at)).where(
                        JobScheduleRow.enabled.is_(True),
                        JobScheduleRow.next_run_at > now,
                        JobScheduleRow.kind.in_(names),
                    )
                )
            )
    return min((at for at in times if at is not None), default=None)


def reap_expired(db: Database) -> list[int]:
    """Take back running jobs whose lease expired (their worker died or hung): re-queued, or failed
    once out of attempts, or cancelled if that was asked. The ids taken back."""
    now = utcnow()
    with db.read() as connection:
        if not connection.scalar(select(exists().where(_expired(now)))):
            return []
    reaped: list[int] = []
    with db.write() as connection:
        query = select(JobRow.id, JobRow.attempts, JobRow.max_attempts, JobRow.cancel_requested).where(
            _expired(now)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in connection.execute(query).all():
            values, line = _reaped_values(row, now)
            done = connection.execute(
                update(JobRow).where(JobRow.id == row.id, _expired(now)).values(**values)
            )
            if done.rowcount == 1:
                connection.execute(insert(JobLogRow).values(job_id=row.id, logged_at=now, line=line))
                reaped.append(row.id)
    return reaped


def _expired(now: datetime) -> Any:
    return (JobRow.status == "running") & (JobRow.lease_expires_at < now)


def _reaped_values(row: Any, now: datetime) -> tuple[dict[str, Any], str]:
    lost = f"the worker running attempt {row.attempts} stopped renewing its lease"
    base: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
    if row.cancel_requested:
        return {**base, "status": "cancelled", "finished_at": now}, f"{lost}; cancelled as asked"
    if row.attempts >= row.max_attempts:
        return {**base, "status": "failed", "finished_at": now, "error": lost}, f"{lost}; no attempts left"
    return {**base, "status": "queued", "run_after": now, "error": lost}, f"{lost}; queued again"


def sync(
    db: Database,
    claimed: Claimed,
    *,
    lease: timedelta | None,
    progress: tuple[int, int | None] | None,
    lines: list[tuple[datetime, str]],
) -> SyncResult:
    """Renew the lease (if `lease`), write progress and log lines, and read whether a cancel was asked.
    Nothing is written once the lease is lost. A pure read when there is nothing to write."""
    guard = (JobRow.id == claimed.id) & (JobRow.lease_owner == claimed.owner) & (JobRow.status == "running")
    if lease is None and progress is None and not lines:
        with db.read() as connection:
            cancel = connection.execute(select(JobRow.cancel_requested).where(guard)).first()
        return SyncResult(cancel is not None, bool(cancel and cancel[0]))
    values: dict[str, Any] = {}
    if lease is not None:
        values["lease_expires_at"] = utcnow() + lease
    if progress is not None:
        values["progress_done"], values["progress_total"] = progress
    with db.write() as connection:
        if values and connection.execute(update(JobRow).where(guard).values(**values)).rowcount != 1:
            return SyncResult(False, False)
        cancel = connection.execute(select(JobRow.cancel_requested).where(guard)).first()
        if cancel is None:
            return SyncResult(False, False)
        if lines:
            connection.execute(
                insert(JobLogRow),
                [{"job_id": claimed.id, "logged_at": at, "line": line} for at, line in lines],
            )
    return SyncResult(True, bool(cancel[0]))


def finish(
    db: Database,
    claimed: Claimed,
    *,
    status: str,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    retry_at: datetime | None = None,
    progress: tuple[int, int | None] | None = None,
    lines: list[tuple[datetime, str]] | None = None,
) -> bool:
    """Record the attempt's outcome (queued again at `retry_at` when status is "queued"). False when the
    lease was lost: another worker has the job now, and this worker's outcome is dropped."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "lease_owner": None, "lease_expires_at": None, "error": error}
    if status == "queued":
        values["run_after"] = retry_at or now
    else:
        values["finished_at"] = now
        values["result"] = dict(result) if result is not None else None
    if progress is not None:
        values["progress_done"], values["progress_total"] = progress
    guard = (JobRow.id == claimed.id) & (JobRow.lease_owner == claimed.owner) & (JobRow.status == "running")
    with db.write() as connection:
        if connection.execute(update(JobRow).where(guard).values(**values)).rowcount != 1:
            return False
        if lines:
            connection.execute(
                insert(JobLogRow),
                [{"job_id": claimed.id, "logged_at": at, "line": line} for at, line in lines],
            )
    return True
