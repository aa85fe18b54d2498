"""A project's storage quota: GET (project admins) and PUT (system administrators), as in Harbor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.auth.interfaces import Unauthenticated
from dockyard.projects.interfaces import ProjectQuota
from dockyard.projects.quotas import DEFAULT_WARN_PERCENT, MAX_LIMIT_BYTES
from dockyard.projects.rbac import Permission

router = APIRouter(tags=["quotas"])
Services = Annotated[ManagementServices, Depends(services_of)]


class QuotaIn(BaseModel):
    limit_bytes: int | None = Field(
        ge=0, le=MAX_LIMIT_BYTES, description="The project's storage limit in bytes; null for no limit."
    )
    warn_percent: int = Field(
        default=DEFAULT_WARN_PERCENT,
        ge=1,
        le=100,
        description="Usage (% of the limit) that raises a warning.",
    )


class QuotaOut(BaseModel):
    project: str
    limit_bytes: int | None
    used_bytes: int = Field(
        description="Each blob and manifest counted once however many repositories hold it."
    )
    warn_percent: int
    used_percent: float | None = Field(description="Usage as a percentage of the limit; null when unlimited.")


def quota_out(quota: ProjectQuota) -> QuotaOut:
    percent = None
    if quota.limit_bytes is not None:
        percent = 100.0 if quota.limit_bytes == 0 else round(100 * quota.used_bytes / quota.limit_bytes, 2)
    return QuotaOut(
        project=quota.project,
        limit_bytes=quota.limit_bytes,
        used_bytes=quota.used_bytes,
        warn_percent=quota.warn_percent,
        used_percent=percent,
    )


@router.get("/projects/{project}/quota", response_model=QuotaOut)
def get_quota(project: str, principal: Caller, services: Services) -> QuotaOut:
    """The limit and the usage. Project admins and system administrators."""
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return quota_out(services.quotas.get(project))


@router.put("/projects/{project}/quota", response_model=QuotaOut)
def set_quota(
    project: str, body: QuotaIn, request: Request, principal: Caller, services: Services
) -> QuotaOut:
    """Set the limit (null: unlimited) and warning threshold. System administrators only. A limit below
    the current usage is accepted: nothing is deleted, pushes of new content are refused."""
    detail = body.model_dump()
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_READ)
        if principal.is_anonymous:  # a public project is visible to anyone: ask who it is first
            raise Unauthenticated()
        if not services.policy.is_admin(principal):
            raise ApiError(403, "only system administrators may change a project's quota")
        quota = services.quotas.set(project, body.limit_bytes, body.warn_percent)
    return quota_out(quota)
