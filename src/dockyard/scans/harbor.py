"""The Harbor pluggable scanner API v1.1 (goharbor/pluggable-scanner-spec,
`api/spec/scanner-adapter-openapi-v1.1.yaml`) as data: its MIME types, a ScanRequest checked field by
field, a stored scan mapped into a HarborVulnerabilityReport, and such a report read back into findings
(what an external adapter answers). No HTTP here: `api/scanner.py` serves it, `scans/adapters.py` calls
one.

Severities map one to one, dockyard's OSV levels to the spec's enum: critical Critical, high High,
medium Medium, low Low, none Negligible, unknown Unknown.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard.content.digest import parse_digest
from dockyard.content.reference import validate_name
from dockyard.errors import Category, DockyardError
from dockyard.scans.interfaces import SEVERITIES, ScanReport, StoredFinding

SPEC_VERSION = "1.1"
METADATA_TYPE = "application/vnd.scanner.adapter.metadata+json; version=1.0"
SCAN_REQUEST_TYPE = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
SCAN_RESPONSE_TYPE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
ERROR_TYPE = "application/vnd.scanner.adapter.error+json; version=1.0"
REPORT_TYPE = "application/vnd.security.vulnerability.report; version=1.1"
REPORT_TYPE_1_0 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
REPORT_TYPES = (REPORT_TYPE, REPORT_TYPE_1_0)
CONSUMES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
TO_HARBOR = {
    "critical": "Critical",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "none": "Negligible",
    "unknown": "Unknown",
}
FROM_HARBOR = {harbor: ours for ours, harbor in TO_HARBOR.items()}
VENDOR_KEY = "dockyard"  # vendor_attributes[VENDOR_KEY]: what the spec has no field for
MAX_VULNERABILITIES = 200_000
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$", re.IGNORECASE)


class ScanRequestMalformed(DockyardError):
    """A ScanRequest that is not JSON, or whose values have the wrong JSON types (the spec's 400)."""

    category = Category.INVALID
    message = "malformed scan request"


class ScanRequestRefused(DockyardError):
    """A ScanRequest whose fields are well formed but not acceptable (the spec's 422): a bad digest or
    repository name, a MIME type not consumed, a registry this server will not pull from."""

    category = Category.INVALID
    message = "scan request refused"


class ReportInvalid(DockyardError):
    """What an adapter answered is not a HarborVulnerabilityReport dockyard can store."""

    category = Category.UNAVAILABLE
    message = "the scanner's report is not valid"


@dataclass(frozen=True)
class ScanRequest:
    registry_url: str
    authorization: str | None
    repository: str
    digest: str
    tag: str | None
    mime_type: str | None

    def artifact(self) -> dict[str, Any]:
        artifact: dict[str, Any] = {"repository": self.repository, "digest": self.digest}
        if self.tag:
            artifact["tag"] = self.tag
        if self.mime_type:
            artifact["mime_type"] = self.mime_type
        return artifact


def _string(obj: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ScanRequestMalformed(f"{where}.{key} is required")
        return None
    if not isinstance(value, str):
        raise ScanRequestMalformed(f"{where}.{key} must be a string")
    return value


def parse_scan_request(body: Any) -> ScanRequest:
    """The request's fields, checked: ScanRequestMalformed for wrong JSON types (400), ScanRequestRefused
    for values that are not acceptable (422). `body` is the parsed JSON."""
    if not isinstance(body, dict):
        raise ScanRequestMalformed("the body must be a JSON object (a ScanRequest)")
    registry, artifact = body.get("registry"), body.get("artifact")
    if not isinstance(registry, dict):
        raise ScanRequestMalformed("registry must be an object with url and authorization")
    if not isinstance(artifact, dict):
        raise ScanRequestMalformed("artifact must be an object with repository and digest")
    url = _string(registry, "url", "registry", True) or ""
    authorization = _string(registry, "authorization", "registry", False)
    repository = _string(artifact, "repository", "artifact", True) or ""
    digest = _string(artifact, "digest", "artifact", True) or ""
    tag = _string(artifact, "tag", "artifact", False)
    mime_type = _string(artifact, "mime_type", "artifact", False)
    if not url or len(url) > 2048:
        raise ScanRequestRefused("registry.url must be a URL of at most 2048 characters")
    if authorization is not None and (len(authorization) > 16384 or not authorization.isprintable()):
        raise ScanRequestRefused("registry.authorization must be printable, at most 16384 characters")
    try:
        validate_name(repository)
    except DockyardError:
        raise ScanRequestRefused(
            f"artifact.repository {repository[:300]!r} is not a repository name"
        ) from None
    try:
        parse_digest(digest)
    except DockyardError:
        raise ScanRequestRefused(f"artifact.digest {digest[:200]!r} is not a digest") from None
    if tag is not None and len(tag) > 128:
        raise ScanRequestRefused("artifact.tag is longer than 128 characters")
    if mime_type and mime_type not in CONSUMES:
        raise ScanRequestRefused(f"artifact.mime_type {mime_type[:200]!r} is not one this scanner consumes")
    return ScanRequest(url, authorization, repository, digest, tag or None, mime_type or None)


def scanner_info(version: str) -> dict[str, str]:
    return {"name": "dockyard", "vendor": "dockyard", "version": version}


def metadata(version: str, vulndb_version: int, vulndb_updated_at: datetime | None) -> dict[str, Any]:
    """ScannerAdapterMetadata: one capability, images in, vulnerability reports out."""
    properties = {
        "harbor.scanner-adapter/scanner-type": "os-package-vulnerability",
        "dockyard/vulnerability-database-version": str(vulndb_version),
    }
    if vulndb_updated_at is not None:
        properties["harbor.scanner-adapter/vulnerability-database-updated-at"] = _rfc3339(vulndb_updated_at)
    return {
        "scanner": scanner_info(version),
        "capabilities": [{"consumes_mime_types": list(CONSUMES), "produces_mime_types": list(REPORT_TYPES)}],
        "properties": properties,
    }


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _links(finding: StoredFinding) -> list[str]:
    links = [f"https://osv.dev/vulnerability/{finding.advisory_id}"]
    links += [f"https://nvd.nist.gov/vuln/detail/{a}" for a in finding.aliases if _CVE.match(a)]
    return links


def _cvss(finding: StoredFinding) -> dict[str, Any] | None:
    vector, score = finding.cvss_vector, finding.cvss_score
    if not vector and score is None:
        return None
    if vector and vector.startswith("CVSS:3"):
        return {"score_v3": score, "vector_v3": vector}
    if vector and not vector.startswith("CVSS:"):  # v2 vectors have no prefix
        return {"score_v2": score, "vector_v2": vector}
    return None  # CVSS v4: the spec has no field for it (kept in vendor_attributes)


def vulnerability_item(finding: StoredFinding) -> dict[str, Any]:
    """One VulnerabilityItem. `id` is the advisory's CVE when it has one (what Harbor's CVE allowlist
    matches), else its own id; dockyard's advisory id, aliases and where the package was found are in
    `vendor_attributes.dockyard`."""
    cves = [a for a in finding.aliases if _CVE.match(a)]
    item: dict[str, Any] = {
        "id": cves[0] if cves else finding.advisory_id,
        "package": finding.package,
        "version": finding.installed_version,
        "fix_version": ", ".join(finding.fixed_versions),
        "severity": TO_HARBOR[finding.severity],
        "description": finding.summary,
        "links": _links(finding),
        "vendor_attributes": {
            VENDOR_KEY: {
                "advisory_id": finding.advisory_id,
                "aliases": finding.aliases,
                "ecosystem": finding.ecosystem,
                "fixed_versions": finding.fixed_versions,
                "cvss_score": finding.cvss_score,
                "cvss_vector": finding.cvss_vector,
                "image": finding.image,
                "platform": finding.platform,
                "layer": finding.layer,
                "path": finding.path,
                "purl": finding.purl,
                "allowlisted": finding.allowlisted,
            }
        },
    }
    if (cvss := _cvss(finding)) is not None:
        item["preferred_cvss"] = cvss
    return item


def harbor_report(
    report: ScanReport, artifact: dict[str, Any], version: str, generated_at: datetime
) -> dict[str, Any]:
    """A stored scan (status done) as a HarborVulnerabilityReport. Every finding is listed, those this
    registry's allowlist hides too (marked in vendor_attributes): the caller applies its own allowlist.
    `severity` is the highest listed; with no vulnerabilities, `Unknown` (the spec's enum has no level
    for none)."""
    items = [vulnerability_item(f) for f in report.findings]
    levels = [f.severity for f in report.findings]
    top = min(levels, key=SEVERITIES.index) if levels else "unknown"
    return {
        "generated_at": _rfc3339(report.summary.scanned_at or generated_at),
        "artifact": artifact,
        "scanner": scanner_info(version),
        "severity": TO_HARBOR[top],
        "vulnerabilities": items,
    }


# --- reading an adapter's report ------------------------------------------------------------------
def _text(value: Any, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReportInvalid(f"{what} is not a string")
    return value[:limit]


def findings_from_report(body: Any, image: str) -> list[dict[str, Any]]:
    """The findings of a HarborVulnerabilityReport, as rows of the stored scans (`scan_findings`
    columns, `allowlisted` False: the caller applies its own allowlist). ReportInvalid when it is not
    one: a scan is never stored as "no vulnerabilities" from an answer that could not be read."""
    if not isinstance(body, dict):
        raise ReportInvalid("the report is not a JSON object")
    items = body.get("vulnerabilities")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ReportInvalid("vulnerabilities is not a list")
    if len(items) > MAX_VULNERABILITIES:
        raise ReportInvalid(f"more than {MAX_VULNERABILITIES} vulnerabilities")
    rows = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReportInvalid(f"vulnerabilities[{n}] is not an object")
        ident = _text(item.get("id"), f"vulnerabilities[{n}].id", 128)
        package = _text(item.get("package"), f"vulnerabilities[{n}].package", 512)
        if not ident or not package:
            raise ReportInvalid(f"vulnerabilities[{n}] has no id or package")
        severity = FROM_HARBOR.get(item.get("severity") or "Unknown")
        if severity is None:
            raise ReportInvalid(
                f"vulnerabilities[{n}].severity {str(item.get('severity'))[:40]!r} is not a level"
            )
        vendor = item.get("vendor_attributes")
        ours = vendor.get(VENDOR_KEY) if isinstance(vendor, dict) else None
        ours = ours if isinstance(ours, dict) else {}
        fix = _text(item.get("fix_version"), f"vulnerabilities[{n}].fix_version", 2000)
        fixed = ours.get("fixed_versions")
        if not (isinstance(fixed, list) and all(isinstance(v, str) for v in fixed)):
            fixed = [v.strip() for v in fix.split(",") if v.strip()]
        aliases = ours.get("aliases")
        advisory = ours.get("advisory_id")
        if isinstance(advisory, str) and advisory and isinstance(aliases, list):
            aliases = [a for a in aliases if isinstance(a, str)][:50]
        else:
            advisory, aliases = ident, []
        score, vector = _score(item.get("preferred_cvss"), ours)
        rows.append(
            {
                "image": _str_or(ours.get("image"), image, 100),
                "platform": _str_or(ours.get("platform"), "", 64),
                "advisory_id": advisory[:128],
                "aliases": aliases,
                "summary": _text(item.get("description"), f"vulnerabilities[{n}].description", 8000),
                "severity": severity,
                "cvss_score": score,
                "cvss_vector": vector,
                "ecosystem": _str_or(ours.get("ecosystem"), "", 255),
                "package": package,
                "installed_version": _text(item.get("version"), f"vulnerabilities[{n}].version", 255),
                "fixed_versions": [v[:255] for v in fixed][:50],
                "layer": _str_or(ours.get("layer"), "", 100),
                "path": _str_or(ours.get("path"), "", 4096),
                "purl": _str_or(ours.get("purl"), "", 4096),
                "allowlisted": False,
            }
        )
    return rows


def _str_or(value: Any, default: str, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else default


def _score(cvss: Any, ours: dict[str, Any]) -> tuple[float | None, str | None]:
    score, vector = ours.get("cvss_score"), ours.get("cvss_vector")
    if isinstance(cvss, dict) and score is None and vector is None:
        for version in ("v3", "v2"):
            if cvss.get(f"score_{version}") is not None or cvss.get(f"vector_{version}"):
                score, vector = cvss.get(f"score_{version}"), cvss.get(f"vector_{version}")
                break
    if not (isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score)):
        score = None
    if not isinstance(vector, str):
        vector = None
    return (None if score is None else float(score)), (None if vector is None else vector[:255])
