"""The contract between the job queue and the handlers of each kind of job (gc, retention, ...).

A handler is a plain function run on a worker thread: it gets a JobContext, does its work, and returns
a JSON-able result (or None). It raises to fail the attempt (the queue retries with backoff up to the
kind's limit); it calls `ctx.check_cancelled()` between units of work so a cancel stops it promptly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from dockyard.errors import Category, DockyardError

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobError(DockyardError):
    """Base of the job queue's errors."""

    category = Category.INVALID
    message = "job error"


class JobCancelled(JobError):
    """Raised by JobContext.check_cancelled() once the job was cancelled (or timed out)."""

    message = "the job was cancelled"


class JobTimedOut(JobCancelled):
    """The job ran past its kind's timeout: it fails (and is not retried)."""

    message = "the job ran past its timeout"


class JobNotFound(JobError):
    category = Category.NOT_FOUND
    message = "job not found"


class JobStateError(JobError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""

    category = Category.CONFLICT
    message = "the job's state does not allow this"


class UnknownJobKind(JobError):
    message = "unknown job kind"


class InvalidSchedule(JobError):
    """A cron expression that does not parse, or never fires."""

    message = "invalid schedule"


class JobContext(Protocol):
    """What a running handler sees of its job."""

    @property
    def job_id(self) -> int: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    def log(self, line: str) -> None:
        """Append a line to the job's log (kept in its history)."""

    def progress(self, done: int, total: int | None = None) -> None:
        """Report progress; `dockyard garbage-collect` and the API show it."""

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled or ran past its timeout."""


JobHandler = Callable[[JobContext], Mapping[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    """A kind of job and how the queue runs it."""

    name: str  # "gc", "retention", "purge-uploads", ...
    handler: JobHandler
    concurrency: int = 1  # at most this many of this kind running at once, cluster-wide
    timeout: timedelta = timedelta(hours=6)
    max_attempts: int = 3
    # A cron expression (UTC) or `@every <duration>` for the schedule the runner keeps in place unless an
    # operator set one through the API; None: run on demand only (a default made earlier is disabled).
    default_schedule: str | None = None
    default_params: Mapping[str, Any] | None = None
    # What the kind's first job would load (modules, clients), loaded by the runner on a thread of its
    # own a while after it starts (runner.WARM_UP_DELAY): not in the job, not on the start's cores.
    warm_up: Callable[[], None] | None = None


@dataclass(frozen=True)
class JobRecord:
    """A job as the queue has it now (a snapshot)."""

    id: int
    kind: str
    params: Mapping[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    progress_done: int
    progress_total: int | None
    result: Mapping[str, Any] | None
    error: str | None
    cancel_requested: bool
    retry_of: int | None
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class JobLogLine:
    logged_at: datetime
    line: str


@dataclass(frozen=True)
class JobSchedule:
    kind: str
    cron: str
    params: Mapping[str, Any]
    enabled: bool
    next_run_at: datetime
    last_job_id: int | None
    origin: str = "default"  # "default": the kind's own (follows the config); "api": set by an operator


@dataclass(frozen=True)
class JobPage:
    items: list[JobRecord]
    total: int
