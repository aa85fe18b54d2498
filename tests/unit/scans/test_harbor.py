"""The Harbor pluggable scanner API's data: ScanRequest validation (400 for wrong JSON types, 422 for
values refused), a stored scan mapped into a HarborVulnerabilityReport, and such a report read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.scans import harbor
from dockyard.scans.interfaces import ScanReport, ScanSummary, StoredFinding

DIGEST = "sha256:" + "ab" * 32


def request(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "registry": {"url": "https://registry.example", "authorization": "Bearer x"},
        "artifact": {
            "repository": "team/app",
            "digest": DIGEST,
            "tag": "v1",
            "mime_type": "application/vnd.oci.image.manifest.v1+json",
        },
    }
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if key:
            body[section][key] = value
        else:
            body[section] = value
    return body


def test_a_well_formed_request_is_read() -> None:
    parsed = harbor.parse_scan_request(request())
    assert (parsed.registry_url, parsed.authorization) == ("https://registry.example", "Bearer x")
    assert parsed.artifact() == {
        "repository": "team/app",
        "digest": DIGEST,
        "tag": "v1",
        "mime_type": "application/vnd.oci.image.manifest.v1+json",
    }


@pytest.mark.parametrize(
    "body",
    [
        [],
        "scan",
        {"artifact": request()["artifact"]},
        request(registry="https://registry.example"),
        request(artifact=None),
        request(registry__url=5),
        request(artifact__digest=["sha256:x"]),
        request(artifact__repository=None),
        request(registry__authorization={"basic": "x"}),
    ],
)
def test_wrong_json_types_are_malformed(body: Any) -> None:
    with pytest.raises(harbor.ScanRequestMalformed):
        harbor.parse_scan_request(body)


@pytest.mark.parametrize(
    "body",
    [
        request(artifact__digest="sha256:1234"),
        request(artifact__digest="latest"),
        request(artifact__repository="Team/App"),
        request(artifact__repository="../etc"),
        request(artifact__mime_type="application/vnd.cncf.helm.config.v1+json"),
        request(registry__url=""),
        request(registry__authorization="Basic \n x"),
    ],
)
def test_unacceptable_values_are_refused(body: Any) -> None:
    with pytest.raises(harbor.ScanRequestRefused):
        harbor.parse_scan_request(body)


def finding(**changes: Any) -> StoredFinding:
    values: dict[str, Any] = {
        "image": DIGEST,
        "platform": "linux/amd64",
        "advisory_id": "GHSA-aaaa-bbbb-cccc",
        "aliases": ["CVE-2024-1234", "PYSEC-2024-1"],
        "summary": "a flaw",
        "severity": "high",
        "cvss_score": 7.5,
        "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        "ecosystem": "PyPI",
        "package": "jinja2",
        "installed_version": "2.11.2",
        "fixed_versions": ["2.11.3", "3.0.0"],
        "layer": "sha256:" + "cd" * 32,
        "path": "usr/lib/python3/dist-packages/Jinja2-2.11.2.dist-info/METADATA",
        "purl": "pkg:pypi/jinja2@2.11.2",
        "allowlisted": False,
    }
    values.update(changes)
    return StoredFinding(**values)


def report(findings: list[StoredFinding]) -> ScanReport:
    scanned = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    summary = ScanSummary("done", {"high": 1}, 0, 3, scanned, "")
    return ScanReport("team/app", DIGEST, summary, scanned, scanned, scanned, 1, 10, [], findings)


def test_a_stored_scan_maps_into_the_spec_report() -> None:
    low = finding(
        advisory_id="DSA-1",
        aliases=[],
        severity="none",
        cvss_score=None,
        cvss_vector=None,
        package="sed",
        installed_version="4.9-1",
        fixed_versions=[],
        ecosystem="Debian:12",
    )
    body = harbor.harbor_report(
        report([finding(), low]), {"repository": "team/app", "digest": DIGEST}, "1.0", datetime.now(UTC)
    )
    assert body["generated_at"] == "2026-12-01T12:00:00Z"
    assert body["scanner"] == {"name": "dockyard", "vendor": "dockyard", "version": "1.0"}
    assert body["artifact"] == {"repository": "team/app", "digest": DIGEST}
    assert body["severity"] == "High"  # the highest listed
    first, second = body["vulnerabilities"]
    assert first["id"] == "CVE-2024-1234"  # the CVE, which Harbor's allowlist matches
    assert (first["package"], first["version"], first["fix_version"]) == ("jinja2", "2.11.2", "2.11.3, 3.0.0")
    assert first["severity"] == "High" and first["description"] == "a flaw"
    assert first["preferred_cvss"] == {"score_v3": 7.5, "vector_v3": finding().cvss_vector}
    assert "https://nvd.nist.gov/vuln/detail/CVE-2024-1234" in first["links"]
    assert first["vendor_attributes"]["dockyard"]["advisory_id"] == "GHSA-aaaa-bbbb-cccc"
    assert second["id"] == "DSA-1" and second["severity"] == "Negligible" and "preferred_cvss" not in second
    assert second["fix_version"] == ""


def test_a_report_without_findings_says_unknown_and_lists_none() -> None:
    body = harbor.harbor_report(report([]), {}, "1.0", datetime.now(UTC))
    assert body["vulnerabilities"] == [] and body["severity"] == "Unknown"


def test_every_severity_goes_both_ways() -> None:
    for ours in ("critical", "high", "medium", "low", "none", "unknown"):
        assert harbor.FROM_HARBOR[harbor.TO_HARBOR[ours]] == ours


def test_a_report_reads_back_into_the_same_findings() -> None:
    original = [
        finding(),
        finding(advisory_id="X-1", aliases=[], severity="critical", cvss_vector=None, cvss_score=9.8),
    ]
    body = harbor.harbor_report(report(original), {}, "1.0", datetime.now(UTC))
    rows = harbor.findings_from_report(json_round_trip(body), DIGEST)
    assert rows == [{**f.as_dict(), "allowlisted": False} for f in original]


def test_a_foreign_adapters_report_is_read_from_the_spec_fields() -> None:
    body = {
        "vulnerabilities": [
            {
                "id": "CVE-2023-0001",
                "package": "openssl",
                "version": "3.0.2",
                "fix_version": "3.0.3, 3.1.0",
                "severity": "Critical",
                "description": "bad",
                "preferred_cvss": {"score_v3": 9.1, "vector_v3": "CVSS:3.1/AV:N"},
            },
        ]
    }
    (row,) = harbor.findings_from_report(body, DIGEST)
    assert (row["advisory_id"], row["package"], row["severity"]) == ("CVE-2023-0001", "openssl", "critical")
    assert row["fixed_versions"] == ["3.0.3", "3.1.0"] and row["cvss_score"] == 9.1
    assert row["image"] == DIGEST and row["aliases"] == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"vulnerabilities": "none"},
        {"vulnerabilities": [{"id": "CVE-1", "package": "x", "severity": "Severe"}]},
        {"vulnerabilities": [{"id": "CVE-1", "severity": "Low"}]},
        {"vulnerabilities": [{"id": 5, "package": "x", "severity": "Low"}]},
        {"vulnerabilities": ["CVE-1"]},
    ],
)
def test_a_report_that_is_not_one_is_invalid(body: Any) -> None:
    with pytest.raises(harbor.ReportInvalid):
        harbor.findings_from_report(body, DIGEST)


def json_round_trip(body: dict[str, Any]) -> Any:
    import json

    return json.loads(json.dumps(body))
