"""Background jobs (system administrators only): list, show (with the log), trigger, cancel and retry
jobs; read and set each kind's cron schedule.

Every change is audited (resource `job` or `job_schedule`, named by the job's kind, so
`resource_name=gc` finds who ran, cancelled or scheduled garbage collection)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.ids import LongResourceId
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.jobs.interfaces import JobRecord, JobSchedule, JobStatus
from dockyard.jobs.queue import JobQueue

router = APIRouter(tags=["jobs"])
Services = Annotated[ManagementServices, Depends(services_of)]
MAX_PARAMS_BYTES = 64 * 1024


class JobOut(BaseModel):
    id: int
    kind: str
    params: dict[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    progress_done: int
    progress_total: int | None
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    retry_of: int | None
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobLogOut(BaseModel):
    time: datetime
    line: str


class JobDetailOut(JobOut):
    logs: list[JobLogOut]


class JobIn(BaseModel):
    kind: str = Field(min_length=1, max_length=64, description="e.g. gc, retention, purge-uploads")
    params: dict[str, Any] = Field(default_factory=dict)


class ScheduleIn(BaseModel):
    cron: str = Field(
        min_length=1, max_length=128, description="5-field cron in UTC, e.g. `0 3 * * *`, or @daily"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class ScheduleOut(BaseModel):
    kind: str
    cron: str
    params: dict[str, Any]
    enabled: bool
    next_run_at: datetime
    last_job_id: int | None


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(
    request: Request,
    response: Response,
    principal: Admin,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(("id",), "-id"))],
    kind: Annotated[str | None, Query(max_length=64, description="Only jobs of this kind.")] = None,
    status: JobStatus | None = None,
) -> list[JobOut]:
    """Newest first."""
    page = _queue(services).list(kind=kind, status=status, page=params.page, page_size=params.page_size)
    set_page_headers(request, response, params, page.total)
    return [job_out(job) for job in page.items]


@router.post("/jobs", response_model=JobOut, status_code=201)
def trigger_job(body: JobIn, request: Request, principal: Admin, services: Services) -> JobOut:
    """Queue a job now; a worker (in `dockyard serve`, or a `dockyard worker`) runs it."""
    _check_params_size(body.params)
    queue = _queue(services)
    detail = {"kind": body.kind, "params": body.params}
    with audited(
        services, request, principal, AuditAction.CREATE, ResourceType.JOB, body.kind, detail
    ) as extra:
        job_id = queue.enqueue(body.kind, body.params)
        extra["job_id"] = job_id
    return job_out(queue.get(job_id))


@router.get("/jobs/kinds", response_model=list[str])
def list_kinds(principal: Admin, services: Services) -> list[str]:
    """The kinds of job this server knows."""
    return sorted(_queue(services).known_kinds or ())


@router.get("/jobs/schedules", response_model=list[ScheduleOut])
def list_schedules(principal: Admin, services: Services) -> list[ScheduleOut]:
    return [schedule_out(schedule) for schedule in _queue(services).schedules()]


@router.get("/jobs/schedules/{kind}", response_model=ScheduleOut)
def get_schedule(kind: str, principal: Admin, services: Services) -> ScheduleOut:
    return schedule_out(_queue(services).schedule(kind))


@router.put("/jobs/schedules/{kind}", response_model=ScheduleOut)
def set_schedule(
    kind: str, body: ScheduleIn, request: Request, principal: Admin, services: Services
) -> ScheduleOut:
    """Create or replace the kind's schedule; it next fires at the cron expression's next match (UTC)."""
    _check_params_size(body.params)
    detail = {"kind": kind, "cron": body.cron, "params": body.params, "enabled": body.enabled}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.JOB_SCHEDULE, kind, detail):
        schedule = _queue(services).set_schedule(kind, body.cron, body.params, enabled=body.enabled)
    return schedule_out(schedule)


@router.delete("/jobs/schedules/{kind}", status_code=204)
def delete_schedule(kind: str, request: Request, principal: Admin, services: Services) -> Response:
    detail = {"kind": kind}
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.JOB_SCHEDULE, kind, detail):
        _queue(services).delete_schedule(kind)
    return Response(status_code=204)


@router.get("/jobs/{job_id}", response_model=JobDetailOut)
def get_job(job_id: LongResourceId, principal: Admin, services: Services) -> JobDetailOut:
    queue = _queue(services)
    job = queue.get(job_id)
    logs = [JobLogOut(time=entry.logged_at, line=entry.line) for entry in queue.logs(job_id)]
    return JobDetailOut(**job_out(job).model_dump(), logs=logs)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: LongResourceId, request: Request, principal: Admin, services: Services) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its handler's next check (about a
    second): it shows `cancel_requested` until then."""
    queue = _queue(services)
    target = _existing(queue, job_id)
    detail = {"kind": target.kind, "job_id": job_id, "params": dict(target.params)}
    with audited(services, request, principal, AuditAction.CANCEL, ResourceType.JOB, target.kind, detail):
        return job_out(queue.cancel(job_id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, status_code=201)
def retry_job(job_id: LongResourceId, request: Request, principal: Admin, services: Services) -> JobOut:
    """Queue a new job with the kind and params of a failed or cancelled one."""
    queue = _queue(services)
    target = _existing(queue, job_id)
    detail = {"kind": target.kind, "retry_of": job_id, "params": dict(target.params)}
    with audited(
        services, request, principal, AuditAction.RETRY, ResourceType.JOB, target.kind, detail
    ) as extra:
        retried = queue.retry(job_id)
        extra["job_id"] = retried.id
    return job_out(retried)


def _existing(queue: JobQueue, job_id: int) -> JobRecord:
    """The job a change is about (a 404, not audited, when there is none: nothing changed)."""
    return queue.get(job_id)


def _queue(services: ManagementServices) -> JobQueue:
    if services.jobs is None:
        raise ApiError(503, "the job queue is not available on this server")
    return services.jobs


def _check_params_size(params: dict[str, Any]) -> None:
    if len(repr(params)) > MAX_PARAMS_BYTES:
        raise ApiError(400, f"params: at most {MAX_PARAMS_BYTES} bytes")


def job_out(job: JobRecord) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        params=dict(job.params),
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        progress_done=job.progress_done,
        progress_total=job.progress_total,
        result=dict(job.result) if job.result is not None else None,
        error=job.error,
        cancel_requested=job.cancel_requested,
        retry_of=job.retry_of,
        run_after=job.run_after,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def schedule_out(schedule: JobSchedule) -> ScheduleOut:
    return ScheduleOut(
        kind=schedule.kind,
        cron=schedule.cron,
        params=dict(schedule.params),
        enabled=schedule.enabled,
        next_run_at=schedule.next_run_at,
        last_job_id=schedule.last_job_id,
    )
