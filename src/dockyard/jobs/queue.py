"""The queue as the API, the CLI and other services see it: enqueue, look at, cancel and retry jobs,
manage schedules, purge old history. Running jobs is the runner's business (`runner.py`)."""

from __future__ import annotations

import builtins
import functools
import threading
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, Select, and_, bindparam, delete, func, insert, select, update

from dockyard.coordination.interfaces import ChangeFeed, Topic
from dockyard.db.base import utcnow
from dockyard.db.dialect import insert_ignore
from dockyard.db.paging import check_window
from dockyard.db.session import Database
from dockyard.jobs.cron import CronError, Every, parse_cron
from dockyard.jobs.interfaces import (
    FINISHED,
    STATUSES,
    InvalidSchedule,
    JobLogLine,
    JobNotFound,
    JobPage,
    JobRecord,
    JobSchedule,
    JobStateError,
    UnknownJobKind,
)
from dockyard.jobs.models import KIND_LENGTH, JobLogRow, JobRow, JobScheduleRow

DEFAULT_MAX_ATTEMPTS = 3


class JobQueue:
    """`feed`: the change feed this node's processes (with Redis: every node's) share. A job queued
    here bumps its Topic.JOBS once committed, and runners elsewhere that watch it (`JobRunner`) start
    the job at once rather than at their next poll. Without one, only a runner in this process does."""

    def __init__(
        self, db: Database, *, known_kinds: Collection[str] | None = None, feed: ChangeFeed | None = None
    ) -> None:
        self.db = db
        self.feed = feed
        # Set by the composition root once every kind is known; None accepts any kind (tests, tools).
        self.known_kinds: frozenset[str] | None = frozenset(known_kinds) if known_kinds is not None else None
        self.max_attempts: dict[str, int] = {}  # per kind, filled in by the runner's kinds
        # Set by an enqueue in this process: a runner in the same process starts the job at once.
        self.wakeup = threading.Event()

    # --- jobs ---------------------------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        run_after: datetime | None = None,
        connection: Connection | None = None,
        retry_of: int | None = None,
    ) -> int:
        """Queue a job; its id. With `connection` (from `db.write()`), the job is part of that
        transaction: workers see it only once (and if) the transaction that caused it commits, and
        are told of it then."""
        self._check_kind(kind)
        values = self._new_job(kind, dict(params or {}), run_after, retry_of)
        if connection is not None:
            job_id = self._insert(connection, values)
            self.db.after_commit(connection, self.queued)
            return job_id
        with self.db.write() as own:
            job_id = self._insert(own, values)
        self.queued()
        return job_id

    def queued(self) -> None:
        """Tell the runners a job was queued or a schedule set (after its commit): this process's at
        once, and those of the processes on the feed (every node, with Redis) within the runner's
        watch interval."""
        self.wakeup.set()
        if self.feed is not None:
            self.feed.bump(Topic.JOBS)

    def get(self, job_id: int) -> JobRecord:
        with self.db.read() as connection:
            row = connection.execute(select(JobRow.__table__).where(JobRow.id == job_id)).first()
        if row is None:
            raise JobNotFound(f"job {job_id} not found")
        return record_of(row)

    def logs(self, job_id: int, limit: int = 10_000) -> builtins.list[JobLogLine]:
        with self.db.read() as connection:
            rows = connection.execute(
                select(JobLogRow.logged_at, JobLogRow.line)
                .where(JobLogRow.job_id == job_id)
                .order_by(JobLogRow.id)
                .limit(limit)
            ).all()
        return [JobLogLine(row.logged_at, row.line) for row in rows]

    def list(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> JobPage:
        """Newest first."""
        if status is not None and status not in STATUSES:
            raise JobStateError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        check_window((page - 1) * page_size, page_size)
        counting, paging = _listing(bool(kind), bool(status))
        values = {"kind": kind, "status": status, "offset": (page - 1) * page_size, "limit": page_size}
        with self.db.read() as connection:
            total = connection.scalar(counting, values) or 0
            rows = connection.execute(paging, values).all()
        return JobPage([record_of(row) for row in rows], total)

    def cancel(self, job_id: int) -> JobRecord:
        """A queued job is cancelled at once; a running one is asked to stop (its handler notices
        within about a second and the job ends `cancelled`). Cancelling a finished job is an error."""
        now = utcnow()
        with self.db.write() as connection:
            queued = connection.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "queued")
                .values(status="cancelled", finished_at=now, cancel_requested=True)
            )
            if queued.rowcount == 0:
                running = connection.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == "running")
                    .values(cancel_requested=True)
                )
                if running.rowcount == 0:
                    status = connection.scalar(select(JobRow.status).where(JobRow.id == job_id))
                    if status is None:
                        raise JobNotFound(f"job {job_id} not found")
                    raise JobStateError(f"job {job_id} has already {_finished_verb(status)}")
        return self.get(job_id)

    def retry(self, job_id: int) -> JobRecord:
        """Queue a new job with the same kind and params as a failed or cancelled one; the new job."""
        original = self.get(job_id)
        if original.status not in ("failed", "cancelled"):
            raise JobStateError(
                f"job {job_id} is {original.status}: only failed or cancelled jobs are retried"
            )
        return self.get(self.enqueue(original.kind, original.params, retry_of=job_id))

    def purge_history(self, older_than: timedelta, kind: str | None = None) -> int:
        """Delete finished jobs (and their log lines) that finished more than `older_than` ago; of
        `kind` only, when given."""
        cutoff = utcnow() - older_than
        old = and_(JobRow.status.in_(sorted(FINISHED)), JobRow.finished_at < cutoff)
        if kind is not None:
            old = and_(old, JobRow.kind == kind)
        with self.db.write() as connection:
            ids = select(JobRow.id).where(old).scalar_subquery()
            connection.execute(delete(JobLogRow).where(JobLogRow.job_id.in_(ids)))
            return connection.execute(delete(JobRow).where(old)).rowcount

    # --- schedules ----------------------------------------------------------------------------
    def schedules(self) -> builtins.list[JobSchedule]:
        with self.db.read() as connection:
            rows = connection.execute(select(JobScheduleRow.__table__).order_by(JobScheduleRow.kind)).all()
        return [schedule_of(row) for row in rows]

    def schedule(self, kind: str) -> JobSchedule:
        with self.db.read() as connection:
            row = connection.execute(
                select(JobScheduleRow.__table__).where(JobScheduleRow.kind == kind)
            ).first()
        if row is None:
            raise JobNotFound(f"no schedule for {kind!r}")
        return schedule_of(row)

    def set_schedule(
        self, kind: str, cron: str, params: Mapping[str, Any] | None = None, *, enabled: bool = True
    ) -> JobSchedule:
        """Create or replace the schedule of `kind` (one per kind); it next fires at cron's next match.
        An operator's schedule: the kind's default no longer overrides it."""
        self._check_kind(kind)
        now = utcnow()
        values = {
            "cron": " ".join(cron.split()),
            "params": dict(params or {}),
            "enabled": enabled,
            "next_run_at": next_run_of(cron, now),
            "origin": "api",
            "updated_at": now,
        }
        with self.db.write() as connection:
            changed = connection.execute(
                update(JobScheduleRow).where(JobScheduleRow.kind == kind).values(**values)
            )
            if changed.rowcount == 0:
                insert_ignore(connection, JobScheduleRow.__table__, {"kind": kind, **values})
        self.queued()  # the runners wait for its first run, not for their next poll
        return self.schedule(kind)

    def ensure_schedule(
        self, kind: str, cron: str, params: Mapping[str, Any] | None = None, *, enabled: bool = True
    ) -> None:
        """Make the default schedule of `kind` say this, unless an operator set one through the API
        (theirs is kept). A new `@every` schedule fires at once, as registry:2's purge did at start."""
        now = utcnow()
        timing = parse_cron(cron)  # a bad default is a programming error: let it raise
        values = {"cron": cron, "params": dict(params or {}), "enabled": enabled}
        first = now if isinstance(timing, Every) else timing.next_after(now)
        with self.db.write() as connection:
            current = connection.execute(
                select(JobScheduleRow.cron, JobScheduleRow.params, JobScheduleRow.enabled).where(
                    JobScheduleRow.kind == kind, JobScheduleRow.origin == "default"
                )
            ).first()
            if current is None:
                row = {"kind": kind, **values, "next_run_at": first, "origin": "default", "updated_at": now}
                insert_ignore(connection, JobScheduleRow.__table__, row)
            elif (current.cron, current.params, current.enabled) != (cron, values["params"], enabled):
                connection.execute(
                    update(JobScheduleRow)
                    .where(JobScheduleRow.kind == kind, JobScheduleRow.origin == "default")
                    .values(**values, next_run_at=timing.next_after(now), updated_at=now)
                )

    def retire_default_schedule(self, kind: str) -> None:
        """The kind has no default schedule (any more): disable the one made from it, if any."""
        with self.db.write() as connection:
            connection.execute(
                update(JobScheduleRow)
                .where(
                    JobScheduleRow.kind == kind,
                    JobScheduleRow.origin == "default",
                    JobScheduleRow.enabled.is_(True),
                )
                .values(enabled=False, updated_at=utcnow())
            )

    def delete_schedule(self, kind: str) -> None:
        with self.db.write() as connection:
            deleted = connection.execute(delete(JobScheduleRow).where(JobScheduleRow.kind == kind))
        if deleted.rowcount == 0:
            raise JobNotFound(f"no schedule for {kind!r}")

    # --- internals ----------------------------------------------------------------------------
    def _check_kind(self, kind: str) -> None:
        if not kind or len(kind) > KIND_LENGTH:
            raise UnknownJobKind(f"invalid job kind {kind!r}")
        if self.known_kinds is not None and kind not in self.known_kinds:
            known = ", ".join(sorted(self.known_kinds)) or "none"
            raise UnknownJobKind(f"unknown job kind {kind!r}; known kinds: {known}")

    def _new_job(
        self, kind: str, params: dict[str, Any], run_after: datetime | None, retry_of: int | None
    ) -> dict[str, Any]:
        now = utcnow()
        return {
            "kind": kind,
            "params": params,
            "status": "queued",
            "attempts": 0,
            "max_attempts": self.max_attempts.get(kind, DEFAULT_MAX_ATTEMPTS),
            "run_after": run_after or now,
            "cancel_requested": False,
            "progress_done": 0,
            "retry_of": retry_of,
            "created_at": now,
        }

    @staticmethod
    def _insert(connection: Connection, values: dict[str, Any]) -> int:
        inserted = connection.execute(insert(JobRow).values(values))
        return int(inserted.inserted_primary_key[0])  # type: ignore[index]


def next_run_of(cron: str, after: datetime) -> datetime:
    try:
        return parse_cron(cron).next_after(after)
    except CronError as exc:
        raise InvalidSchedule(str(exc)) from None


def record_of(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        params=row.params or {},
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        progress_done=row.progress_done,
        progress_total=row.progress_total,
        result=row.result,
        error=row.error,
        cancel_requested=row.cancel_requested,
        retry_of=row.retry_of,
        run_after=row.run_after,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def schedule_of(row: Any) -> JobSchedule:
    return JobSchedule(
        row.kind, row.cron, row.params or {}, row.enabled, row.next_run_at, row.last_job_id, row.origin
    )


def _finished_verb(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled"}.get(status, status)


@functools.cache
def _listing(by_kind: bool, by_status: bool) -> tuple[Select[Any], Select[Any]]:
    """The count and the page (newest first) of `JobQueue.list`, built once per filter combination:
    building a statement costs more CPU than running it."""
    jobs = JobRow.__table__
    where = []
    if by_kind:
        where.append(jobs.c.kind == bindparam("kind"))
    if by_status:
        where.append(jobs.c.status == bindparam("status"))
    counting = select(func.count()).select_from(jobs).where(*where)
    paging = (
        select(jobs)
        .where(*where)
        .order_by(jobs.c.id.desc())
        .offset(bindparam("offset", type_=BigInteger))
        .limit(bindparam("limit", type_=BigInteger))
    )
    return counting, paging
