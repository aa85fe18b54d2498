"""A project's tag retention policy, its runs (queued as "retention" jobs) and their reports.

Whoever may see the project reads the policy and the run history; project admins (and system
administrators) change the policy and start runs. See docs/retention.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.ids import LongResourceId
from dockyard.api.management.security import Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.jobs.queue import JobQueue
from dockyard.projects.rbac import Permission
from dockyard.retention.interfaces import KIND, Policy
from dockyard.retention.services import RetentionPolicies, RetentionRuns

router = APIRouter(tags=["retention"])
Services = Annotated[ManagementServices, Depends(services_of)]


class RunIn(BaseModel):
    dry_run: bool = False


class RunQueued(BaseModel):
    job_id: int
    project: str
    dry_run: bool


class RunOut(BaseModel):
    id: int
    job_id: int | None
    dry_run: bool
    status: str  # running | succeeded | failed
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None  # kept / deleted / kept_immutable / skipped counts
    error: str | None


class RunReportOut(RunOut):
    report: dict[str, Any] | None  # per repository: each tag, kept or deleted, and the reason


@router.get("/projects/{project}/retention", response_model=Policy)
def get_policy(project: str, principal: Caller, services: Services) -> Policy:
    require(services, principal, project, Permission.PROJECT_READ)
    return RetentionPolicies(services.db).get(project)


@router.put("/projects/{project}/retention", response_model=Policy)
def set_policy(project: str, body: Policy, request: Request, principal: Caller, services: Services) -> Policy:
    """Replace the policy. Patterns are doublestar globs (`**`, `*`, `{a,b}`); actions are Harbor's
    latestPushedK, latestPulledN (with `count`), nDaysSinceLastPush, nDaysSinceLastPull (with `days`),
    always."""
    detail = {"retention": {"rules": len(body.rules), "schedule": body.schedule}}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        return RetentionPolicies(services.db).put(project, body)


@router.delete("/projects/{project}/retention", status_code=204)
def delete_policy(project: str, request: Request, principal: Caller, services: Services) -> None:
    detail = {"retention": "deleted"}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        RetentionPolicies(services.db).delete(project)


@router.post("/projects/{project}/retention/run", response_model=RunQueued, status_code=202)
def run_policy(
    project: str, request: Request, principal: Caller, services: Services, body: RunIn | None = None
) -> RunQueued:
    """Queue a run of the policy; a dry run only reports. Follow it at /jobs/{job_id} or in
    /projects/{project}/retention/runs."""
    dry_run = body.dry_run if body else False
    detail: dict[str, Any] = {"retention_run": {"dry_run": dry_run}}
    with audited(
        services, request, principal, AuditAction.CREATE, ResourceType.PROJECT, project, detail
    ) as extra:
        require(services, principal, project, Permission.PROJECT_UPDATE)
        services.projects.get(project)
        job_id = _queue(services).enqueue(KIND, {"project": project, "dry_run": dry_run})
        extra["job_id"] = job_id
    return RunQueued(job_id=job_id, project=project, dry_run=dry_run)


@router.get("/projects/{project}/retention/runs", response_model=list[RunOut])
def list_runs(
    project: str,
    principal: Caller,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=100, description="How many of the latest runs.")] = 20,
) -> list[RunOut]:
    """The latest runs, newest first (reports at /runs/{id})."""
    require(services, principal, project, Permission.PROJECT_READ)
    return [RunOut(**run) for run in RetentionRuns(services.db).list(project, limit)]


@router.get("/projects/{project}/retention/runs/{run_id}", response_model=RunReportOut)
def get_run(project: str, run_id: LongResourceId, principal: Caller, services: Services) -> RunReportOut:
    require(services, principal, project, Permission.PROJECT_READ)
    run = RetentionRuns(services.db).get(project, run_id)
    if run is None:
        raise ApiError(404, f"no retention run {run_id} in project {project!r}")
    return RunReportOut(**run)


def _queue(services: ManagementServices) -> JobQueue:
    if services.jobs is None:
        raise ApiError(503, "the job queue is not available on this server")
    return services.jobs
