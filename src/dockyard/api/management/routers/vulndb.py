"""The offline vulnerability database: its version and contents (system administrators), and the
allowlist: system-wide (system administrators), per project (read by whoever sees the project, changed
by project admins). Changes to the allowlist are audited (resource type `vulndb_allowlist`).

Imports are a `dockyard vulndb` command (docs/security.md): an import reads files on the machine it
runs on, which no API request should be able to name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field, field_validator

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.security import Admin, Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.projects.rbac import Permission
from dockyard.vulndb.interfaces import AllowlistEntry, AllowlistEntryNotFound

if TYPE_CHECKING:
    from dockyard.vulndb.services import VulnDB

router = APIRouter(tags=["vulnerabilities"])
Services = Annotated[ManagementServices, Depends(services_of)]


class VulnImportOut(BaseModel):
    id: int
    started_at: datetime
    finished_at: datetime
    source: str
    documents: int
    added: int
    updated: int
    unchanged: int
    affected: int
    advisories_total: int


class VulnDBOut(BaseModel):
    version: int = Field(description="Id of the last import that changed something; 0: nothing imported.")
    advisories: int
    affected: int = Field(description="Affected-package entries.")
    withdrawn: int
    by_ecosystem: dict[str, int] = Field(description="Affected-package entries per (lower-cased) ecosystem.")
    last_import: VulnImportOut | None = Field(description="The newest import, whether it changed anything.")
    last_change: VulnImportOut | None = Field(description="The import that made the current version.")


@router.get("/vulndb", response_model=VulnDBOut)
def vulndb_status(principal: Admin, services: Services) -> VulnDBOut:
    """The vulnerability database's version, its size per ecosystem and its last imports."""
    return VulnDBOut.model_validate(_vulndb(services).status().as_dict())


# --- the allowlist: system-wide (system administrators), per project (read: who sees the project;
# change: project admins) ------------------------------------------------------------------------
class AllowIn(BaseModel):
    expires_at: datetime | None = Field(
        default=None, description="Counts again from then (UTC); none: never."
    )
    reason: str = Field(default="", max_length=1000)

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """A time without a zone is UTC (the column holds aware times only)."""
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class AllowOut(BaseModel):
    vuln_id: str
    project: str | None
    expires_at: datetime | None
    reason: str
    created_by: str
    created_at: datetime


VulnId = Annotated[str, Path(min_length=1, max_length=128, description="A CVE or advisory id.")]


def _vulndb(services: ManagementServices) -> VulnDB:
    from dockyard.vulndb.services import VulnDB  # the server loads it when asked, not at start

    return VulnDB(services.db)


def _out(entries: list[AllowlistEntry]) -> list[AllowOut]:
    return [AllowOut.model_validate(e.as_dict()) for e in entries]


@router.get("/vulndb/allowlist", response_model=list[AllowOut])
def system_allowlist(principal: Admin, services: Services) -> list[AllowOut]:
    """The system-wide allowlist (expired entries included, with their expiry)."""
    return _out(_vulndb(services).allowlist())


@router.put("/vulndb/allowlist/{vuln_id}", response_model=AllowOut)
def allow_system_wide(
    vuln_id: VulnId, body: AllowIn, request: Request, principal: Admin, services: Services
) -> AllowOut:
    """Accept a vulnerability everywhere (until `expires_at`); replaces an entry for the same id."""
    detail = {"project": None, "expires_at": _iso(body.expires_at), "reason": body.reason[:200]}
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.VULNDB_ALLOWLIST, vuln_id, detail
    ):
        entry = _vulndb(services).allow(vuln_id, None, body.expires_at, body.reason, principal.name)
    _recount(services, None)
    return AllowOut.model_validate(entry.as_dict())


@router.delete("/vulndb/allowlist/{vuln_id}", status_code=204)
def disallow_system_wide(vuln_id: VulnId, request: Request, principal: Admin, services: Services) -> Response:
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.VULNDB_ALLOWLIST, vuln_id):
        if not _vulndb(services).disallow(vuln_id):
            raise AllowlistEntryNotFound(f"{vuln_id} is not allowlisted system-wide")
    _recount(services, None)
    return Response(status_code=204)


@router.get("/projects/{project}/vulndb/allowlist", response_model=list[AllowOut])
def project_allowlist(project: str, principal: Caller, services: Services) -> list[AllowOut]:
    """The project's own allowlist (the system-wide one applies too)."""
    require(services, principal, project, Permission.PROJECT_READ)
    return _out(_vulndb(services).allowlist(project))


@router.put("/projects/{project}/vulndb/allowlist/{vuln_id}", response_model=AllowOut)
def allow_in_project(
    project: str, vuln_id: VulnId, body: AllowIn, request: Request, principal: Caller, services: Services
) -> AllowOut:
    detail = {"project": project, "expires_at": _iso(body.expires_at), "reason": body.reason[:200]}
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.VULNDB_ALLOWLIST, vuln_id, detail
    ):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        entry = _vulndb(services).allow(vuln_id, project, body.expires_at, body.reason, principal.name)
    _recount(services, project)
    return AllowOut.model_validate(entry.as_dict())


@router.delete("/projects/{project}/vulndb/allowlist/{vuln_id}", status_code=204)
def disallow_in_project(
    project: str, vuln_id: VulnId, request: Request, principal: Caller, services: Services
) -> Response:
    detail = {"project": project}
    with audited(
        services, request, principal, AuditAction.DELETE, ResourceType.VULNDB_ALLOWLIST, vuln_id, detail
    ):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        if not _vulndb(services).disallow(vuln_id, project):
            raise AllowlistEntryNotFound(f"{vuln_id} is not allowlisted in project {project}")
    _recount(services, project)
    return Response(status_code=204)


def _recount(services: ManagementServices, project: str | None) -> None:
    """Stored scans count allowlisted findings apart: a job applies the changed allowlist to them."""
    if services.jobs is not None:
        services.jobs.enqueue("scan", {"recount": project or "*"})


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
