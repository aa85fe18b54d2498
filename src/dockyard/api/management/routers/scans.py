"""Scans: request an artifact's vulnerability scan (developers: it costs a job), read its stored report
(whoever may read the repository), and a project's scan settings (`scan_on_push`: read by whoever sees
the project, changed by project admins). docs/security.md, "Scans"."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.security import Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.errors import NameUnknown
from dockyard.projects.rbac import Permission, project_of

if TYPE_CHECKING:
    from dockyard.scans.interfaces import ScanSummary
    from dockyard.scans.services import Scans

router = APIRouter(tags=["scans"])
Services = Annotated[ManagementServices, Depends(services_of)]
Severity = Literal["critical", "high", "medium", "low", "none", "unknown"]


class ScanSummaryOut(BaseModel):
    status: str = Field(description="pending | running | done | failed (of the latest scan).")
    counts: dict[str, int] | None = Field(
        description="Findings per severity, allowlisted ones left out, of the last finished scan; "
        "null without a result (first scan not finished, or the last one failed)."
    )
    allowlisted: int = Field(description="Findings the allowlist hides.")
    vulndb_version: int | None = Field(description="The vulnerability database version the result used.")
    scanned_at: datetime | None
    reason: str = Field(description="Why the last scan failed.")
    scanner: str | None = Field(
        default=None,
        description='Which scanner made the last result or failure: "built-in" or a registered '
        "scanner's name (as it was then); null before the first scan finished.",
    )


class FindingOut(BaseModel):
    image: str = Field(description="The image manifest (for an index: the platform's).")
    platform: str
    advisory_id: str
    aliases: list[str] = Field(description="CVE and other ids of the same vulnerability.")
    summary: str
    severity: str
    cvss_score: float | None
    cvss_vector: str | None
    ecosystem: str
    package: str
    installed_version: str
    fixed_versions: list[str]
    layer: str = Field(description="The digest of the layer that added the package.")
    path: str
    purl: str
    allowlisted: bool


class ScanReportOut(ScanSummaryOut):
    repository: str
    digest: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    job_id: int | None
    packages: int | None
    incomplete: list[dict[str, str]] = Field(description="Package formats found but not readable.")
    findings: list[FindingOut]


class ScanRequestOut(BaseModel):
    repository: str
    digest: str
    status: str
    job_id: int


class ScanSettingsIn(BaseModel):
    scan_on_push: bool = Field(
        description="Scan every manifest pushed to the project (a job, after the push)."
    )


class ScanSettingsOut(ScanSettingsIn):
    project: str


def scans_of(services: ManagementServices) -> Scans:
    from dockyard.scans.services import Scans  # loaded when first asked for

    return Scans(services.db, jobs=services.jobs)


def summary_out(summary: ScanSummary | None) -> ScanSummaryOut | None:
    return None if summary is None else ScanSummaryOut.model_validate(summary.as_dict())


@router.post(
    "/repositories/{name:path}/artifacts/{reference}/scan", response_model=ScanRequestOut, status_code=202
)
def request_scan(
    name: str, reference: str, request: Request, principal: Caller, services: Services
) -> ScanRequestOut:
    """Queue a scan of the artifact (a tag or digest); `GET .../scan` shows it pending, then its result."""
    detail = {"reference": reference}
    with audited(
        services, request, principal, AuditAction.CREATE, ResourceType.REPOSITORY, name, detail
    ) as extra:
        require(services, principal, project_of(name), Permission.PUSH, NameUnknown(detail={"name": name}))
        digest = services.queries.get_artifact(name, reference).summary.digest
        job_id = scans_of(services).request(name, digest)
        extra.update(scan_job=job_id, digest=digest)
    return ScanRequestOut(repository=name, digest=digest, status="pending", job_id=job_id)


@router.get("/repositories/{name:path}/artifacts/{reference}/scan", response_model=ScanReportOut)
def scan_report(
    name: str,
    reference: str,
    principal: Caller,
    services: Services,
    severity: Annotated[
        Severity | None, Query(description="Only findings of this severity or worse.")
    ] = None,
) -> ScanReportOut:
    """The artifact's stored scan: status, counts, the vulnerability database version, findings."""
    require(
        services, principal, project_of(name), Permission.PROJECT_READ, NameUnknown(detail={"name": name})
    )
    digest = services.queries.get_artifact(name, reference).summary.digest
    report = scans_of(services).report(name, digest, severity)
    return ScanReportOut.model_validate(report.as_dict())


@router.get("/projects/{project}/scan-settings", response_model=ScanSettingsOut)
def get_scan_settings(project: str, principal: Caller, services: Services) -> ScanSettingsOut:
    require(services, principal, project, Permission.PROJECT_READ)
    return ScanSettingsOut(project=project, scan_on_push=scans_of(services).scan_on_push(project))


@router.put("/projects/{project}/scan-settings", response_model=ScanSettingsOut)
def put_scan_settings(
    project: str, body: ScanSettingsIn, request: Request, principal: Caller, services: Services
) -> ScanSettingsOut:
    detail = {"scan_on_push": body.scan_on_push}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        scans_of(services).set_scan_on_push(project, body.scan_on_push)
    return ScanSettingsOut(project=project, scan_on_push=body.scan_on_push)
