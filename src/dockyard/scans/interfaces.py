"""What stored scans give: an artifact's summary (the pull policy's read), its report, the errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dockyard.errors import Category, DockyardError

ScanStatus = Literal["pending", "running", "done", "failed"]
SEVERITIES = ("critical", "high", "medium", "low", "none", "unknown")  # most severe first (vulndb.osv)
BUILT_IN = "built-in"  # the built-in scanner's name: what scans record, jobs ask for, and the default


class ScanNotFound(DockyardError):
    """The artifact was never scanned (or its scan went with its repository)."""

    category = Category.NOT_FOUND
    message = "the artifact has not been scanned"


class ScanParamsInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid scan parameters"


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """An artifact's scan as a pull policy or a listing reads it. `counts` (per severity, allowlisted
    findings left out) is None when there is no result: the first scan is pending or running, or the
    last scan failed (`reason`). A rescan in progress keeps the previous result's counts."""

    status: str
    counts: dict[str, int] | None
    allowlisted: int
    vulndb_version: int | None
    scanned_at: datetime | None
    reason: str
    scanner: str | None = None  # "built-in" or a registered scanner's name; None before the first result

    def at_or_above(self, severity: str) -> int | None:
        """Findings of `severity` or worse (None without a result)."""
        if self.counts is None:
            return None
        levels = SEVERITIES[: SEVERITIES.index(severity) + 1]
        return sum(self.counts[level] for level in levels)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "counts": self.counts,
            "allowlisted": self.allowlisted,
            "vulndb_version": self.vulndb_version,
            "scanned_at": self.scanned_at,
            "scanner": self.scanner,
            "reason": self.reason,
        }


@dataclass(slots=True)
class StoredFinding:
    image: str
    platform: str
    advisory_id: str
    aliases: list[str]
    summary: str
    severity: str
    cvss_score: float | None
    cvss_vector: str | None
    ecosystem: str
    package: str
    installed_version: str
    fixed_versions: list[str]
    layer: str
    path: str
    purl: str
    allowlisted: bool

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(slots=True)
class ScanReport:
    repository: str
    digest: str
    summary: ScanSummary
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    job_id: int | None
    packages: int | None
    incomplete: list[dict[str, str]]
    findings: list[StoredFinding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            **self.summary.as_dict(),
            "requested_at": self.requested_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "job_id": self.job_id,
            "packages": self.packages,
            "incomplete": self.incomplete,
            "findings": [f.as_dict() for f in self.findings],
        }
