"""Firing cron schedules: each due schedule becomes exactly one job, however many runners look at once.

A runner that sees a due schedule moves its `next_run_at` forward with a compare-and-set on the value it
read (on PostgreSQL after locking the row with `FOR UPDATE SKIP LOCKED`) and inserts the job in the same
transaction: only the runner whose update changed the row creates the job.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exists, insert, select, update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.jobs.cron import CronError, parse_cron
from dockyard.jobs.models import JobRow, JobScheduleRow

log = logging.getLogger("dockyard.jobs")


def fire_due_schedules(db: Database, kinds: Collection[str], max_attempts: Mapping[str, int]) -> list[int]:
    """Queue a job for every enabled schedule of `kinds` that is due; the new jobs' ids. A schedule whose
    previous job is still queued fires no second one (the runs would only pile up)."""
    now = utcnow()
    due_filter = (
        JobScheduleRow.enabled.is_(True),
        JobScheduleRow.next_run_at <= now,
        JobScheduleRow.kind.in_(sorted(kinds)),
    )
    with db.read() as connection:
        due = connection.execute(select(JobScheduleRow.kind).where(*due_filter)).scalars().all()
    fired: list[int] = []
    for kind in due:
        job_id = _fire(db, kind, max_attempts.get(kind, 3))
        if job_id is not None:
            fired.append(job_id)
    return fired


def _fire(db: Database, kind: str, max_attempts: int) -> int | None:
    now = utcnow()
    with db.write() as connection:
        query = select(JobScheduleRow.__table__).where(
            JobScheduleRow.kind == kind, JobScheduleRow.enabled.is_(True), JobScheduleRow.next_run_at <= now
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        schedule = connection.execute(query).first()
        if schedule is None:
            return None  # another runner fired it, or it was changed meanwhile
        try:
            next_run = parse_cron(schedule.cron).next_after(now)
        except CronError as exc:  # only a hand-edited row gets here: the API validates
            log.error("schedule of %s disabled: %s", kind, exc)
            connection.execute(
                update(JobScheduleRow).where(JobScheduleRow.kind == kind).values(enabled=False)
            )
            return None
        moved = connection.execute(
            update(JobScheduleRow)
            .where(JobScheduleRow.kind == kind, JobScheduleRow.next_run_at == schedule.next_run_at)
            .values(next_run_at=next_run)
        )
        if moved.rowcount != 1:
            return None
        pending = exists().where(JobRow.kind == kind, JobRow.status == "queued")
        if connection.scalar(select(pending)):
            log.info("schedule of %s due, but its previous job is still queued: not queuing another", kind)
            return None
        job_id = _insert_job(connection, kind, dict(schedule.params or {}), max_attempts, now)
        connection.execute(
            update(JobScheduleRow).where(JobScheduleRow.kind == kind).values(last_job_id=job_id)
        )
    log.info("schedule of %s queued job %d; next run %s", kind, job_id, next_run.isoformat())
    return job_id


def _insert_job(
    connection: Connection, kind: str, params: dict[str, Any], max_attempts: int, now: datetime
) -> int:
    inserted = connection.execute(
        insert(JobRow).values(
            kind=kind,
            params=params,
            status="queued",
            attempts=0,
            max_attempts=max_attempts,
            run_after=now,
            cancel_requested=False,
            progress_done=0,
            created_at=now,
        )
    )
    return int(inserted.inserted_primary_key[0])  # type: ignore[index]
