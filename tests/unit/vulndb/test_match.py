"""Matching packages against the imported records, and the allowlist (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.db.session import Database
from dockyard.projects.interfaces import ProjectNotFound
from dockyard.projects.models import ProjectRow
from dockyard.vulndb.interfaces import AllowlistInvalid, Finding, Package
from dockyard.vulndb.services import VulnDB
from tests.unit.vulndb.conftest import FIXTURES

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vulndb(db: Database, clock: Clock) -> VulnDB:
    service = VulnDB(db, clock=clock)
    service.import_paths([FIXTURES])
    with db.write() as conn:
        conn.execute(ProjectRow.__table__.insert(), [{"name": "team"}, {"name": "other"}])
    return service


def ids(findings: list[Finding]) -> list[str]:
    return [f.advisory_id for f in findings]


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        (Package("PyPI", "Jinja2", "2.11.2"), ["GHSA-g3rq-g295-4j3m"]),
        (Package("PyPI", "jinja2", "2.11.3"), []),
        (Package("PyPI", "PyYAML", "5.3.1"), ["PYSEC-2021-142"]),
        (Package("PyPI", "pyyaml", "5.4b2"), ["PYSEC-2021-142"]),  # a pre-release of the fix
        (Package("PyPI", "PyYAML", "5.4"), []),
        (Package("PyPI", "requests", "2.30.0"), ["PYSEC-2023-74"]),
        (Package("PyPI", "requests", "2.2.1"), []),  # the GIT range from "0" is not evaluated
        (Package("PyPI", "requests", "2.31.0"), []),
        (Package("Go", "stdlib", "go1.19.0"), ["GO-2022-0969"]),
        (Package("Go", "stdlib", "go1.18.6"), []),
        (Package("Go", "golang.org/x/net", "v0.0.0-20220826154423-83b083e8dc8b"), ["GO-2022-0969"]),
        (Package("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1"), ["GHSA-jfh8-c2jp-5v3q"]),
        (Package("Maven", "org.apache.logging.log4j:log4j-core", "2.17.1"), []),
        (Package("npm", "lodash", "4.17.20"), ["GHSA-35jh-r3h4-6jhm"]),
        (Package("npm", "lodash", "4.17.21"), []),
        (Package("Debian:12", "openssl", "3.0.11-1~deb12u1"), ["DSA-5532-1"]),
        (Package("Debian:12", "openssl", "3.0.11-1~deb12u2"), []),
        (Package("Debian:11", "openssl", "3.0.11-1~deb12u1"), []),  # another release's advisory
        (Package("Alpine:v3.18", "openssl", "3.1.3-r0"), ["ALPINE-CVE-2023-5363"]),
        (Package("Alpine:v3.18", "openssl", "3.1.4-r0"), []),
        (Package("Alpine:v3.19", "openssl", "3.1.3-r0"), []),
        (Package("npm", "jinja2", "2.11.2"), []),  # same name, other ecosystem
    ],
)
def test_real_packages_and_versions(vulndb: VulnDB, package: Package, expected: list[str]) -> None:
    assert ids(vulndb.match([package])) == expected


def test_a_finding_says_what_to_upgrade_to_and_how_bad_it_is(vulndb: VulnDB) -> None:
    log4j = Package("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1")
    (finding,) = vulndb.match([log4j])
    assert finding.aliases == ["CVE-2021-44228"]
    assert finding.severity == "critical" and finding.cvss_score == 10.0
    assert finding.cvss_vector == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"
    assert finding.installed_version == "2.14.1" and finding.fixed_versions == ["2.15.0"]
    assert finding.package is log4j
    (lodash,) = vulndb.match([Package("npm", "lodash", "4.17.20")])
    assert (lodash.severity, lodash.cvss_score) == ("high", 7.2)
    (dsa,) = vulndb.match([Package("Debian:12", "openssl", "3.0.9-1")])
    assert dsa.severity == "unknown" and dsa.fixed_versions == ["3.0.11-1~deb12u2"]


def test_one_flaw_under_two_ids_is_one_finding(vulndb: VulnDB) -> None:
    (finding,) = vulndb.match([Package("PyPI", "Jinja2", "2.11.2")])
    # GitHub's record carries the CVSS vector, so it names the finding; PyPA's id joins the aliases.
    assert finding.advisory_id == "GHSA-g3rq-g295-4j3m"
    assert finding.severity == "medium" and finding.cvss_score == 5.3
    assert set(finding.aliases) == {"CVE-2020-28493", "PYSEC-2021-66", "SNYK-PYTHON-JINJA2-1012994"}
    assert finding.fixed_versions == ["2.11.3"]


def test_many_packages_at_once_most_severe_first(vulndb: VulnDB) -> None:
    packages = [
        Package("PyPI", "jinja2", "2.11.2"),
        Package("npm", "lodash", "4.17.20"),
        Package("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1"),
        Package("PyPI", "flask", "2.0.0"),
        *[Package("PyPI", f"unknown-{n}", "1.0") for n in range(1200)],  # more than one IN (...) list
    ]
    assert [f.severity for f in vulndb.match(packages)] == ["critical", "high", "medium"]


def test_the_system_allowlist_hides_a_cve_by_alias(vulndb: VulnDB) -> None:
    jinja = Package("PyPI", "jinja2", "2.11.2")
    vulndb.allow("cve-2020-28493", reason="not reachable", created_by="admin")
    assert vulndb.match([jinja]) == []
    (shown,) = vulndb.match([jinja], include_allowlisted=True)
    assert shown.allowlisted
    (entry,) = vulndb.allowlist()
    assert (entry.vuln_id, entry.project, entry.reason) == ("cve-2020-28493", None, "not reachable")
    assert vulndb.disallow("CVE-2020-28493") is True
    assert ids(vulndb.match([jinja])) == ["GHSA-g3rq-g295-4j3m"]
    assert vulndb.disallow("CVE-2020-28493") is False


def test_a_project_allowlist_applies_to_that_project_only(vulndb: VulnDB) -> None:
    lodash = Package("npm", "lodash", "4.17.20")
    vulndb.allow("GHSA-35jh-r3h4-6jhm", project="team")
    assert vulndb.match([lodash], project="team") == []
    assert ids(vulndb.match([lodash], project="other")) == ["GHSA-35jh-r3h4-6jhm"]
    assert ids(vulndb.match([lodash])) == ["GHSA-35jh-r3h4-6jhm"]
    assert [e.vuln_id for e in vulndb.allowlist("team")] == ["GHSA-35jh-r3h4-6jhm"]
    assert vulndb.allowlist() == []


def test_an_allowlist_entry_expires(vulndb: VulnDB, clock: Clock) -> None:
    lodash = Package("npm", "lodash", "4.17.20")
    vulndb.allow("CVE-2021-23337", expires_at=NOW + timedelta(days=7))
    assert vulndb.match([lodash]) == []
    clock.now = NOW + timedelta(days=7)
    assert ids(vulndb.match([lodash])) == ["GHSA-35jh-r3h4-6jhm"]
    # Allowing again replaces the entry.
    vulndb.allow("CVE-2021-23337", expires_at=NOW + timedelta(days=30))
    assert vulndb.match([lodash]) == []
    assert len(vulndb.allowlist()) == 1


@pytest.mark.parametrize("bad", ["", "   ", "CVE 2021", "X" * 200])
def test_allowlist_ids_are_checked(vulndb: VulnDB, bad: str) -> None:
    with pytest.raises(AllowlistInvalid):
        vulndb.allow(bad)


def test_allowlist_expiry_in_the_past_and_unknown_projects_are_refused(vulndb: VulnDB) -> None:
    with pytest.raises(AllowlistInvalid, match="in the past"):
        vulndb.allow("CVE-2021-23337", expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(ProjectNotFound):
        vulndb.allow("CVE-2021-23337", project="nope")
    with pytest.raises(ProjectNotFound):
        vulndb.match([Package("npm", "lodash", "4.17.20")], project="nope")


def test_inventory_records_match_by_release_and_source_package(vulndb: VulnDB) -> None:
    from dockyard.scanning.models import Package as InventoryPackage

    libssl = InventoryPackage(
        "libssl3",
        "3.0.11-1~deb12u1",
        "Debian",
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u1",
        "sha256:aa",
        "var/lib/dpkg/status",
        source_name="openssl",
        arch="amd64",
        distro="debian-12",
    )
    apk = InventoryPackage(
        "libcrypto3",
        "3.1.3-r0",
        "Alpine",
        "pkg:apk/alpine/libcrypto3@3.1.3-r0",
        "sha256:bb",
        "lib/apk/db/installed",
        source_name="openssl",
        distro="alpine-3.18.4",
    )
    findings = vulndb.match([libssl, apk])
    assert sorted(ids(findings)) == ["ALPINE-CVE-2023-5363", "DSA-5532-1"]
    assert {f.name for f in findings} == {"libssl3", "libcrypto3"}  # the installed package's name
    assert {f.package.layer for f in findings} == {"sha256:aa", "sha256:bb"}


def test_allowlist_changes_and_imports_are_audited(db: Database, clock: Clock) -> None:
    from sqlalchemy import select

    from dockyard.audit.models import AuditEventRow
    from dockyard.audit.services import AuditLog

    audited = VulnDB(db, clock=clock, audit=AuditLog(db))
    audited.import_paths([FIXTURES], actor="cli:root")
    audited.allow("CVE-2021-23337", reason="mitigated", created_by="admin")
    audited.allow("CVE-2021-23337", reason="still mitigated", created_by="admin")
    audited.disallow("CVE-2021-23337", actor="cli:root")
    audited.disallow("CVE-2021-23337", actor="cli:root")  # nothing to remove: not recorded
    with db.read() as conn:
        rows = conn.execute(
            select(
                AuditEventRow.actor,
                AuditEventRow.actor_kind,
                AuditEventRow.action,
                AuditEventRow.resource_type,
                AuditEventRow.resource_name,
            ).order_by(AuditEventRow.id)
        ).all()
        detail = conn.execute(select(AuditEventRow.detail).order_by(AuditEventRow.id)).scalars().first()
    assert [tuple(r) for r in rows] == [
        ("cli:root", "system", "create", "vulndb", "version 1"),
        ("admin", "user", "create", "vulndb_allowlist", "CVE-2021-23337"),
        ("admin", "user", "update", "vulndb_allowlist", "CVE-2021-23337"),
        ("cli:root", "system", "delete", "vulndb_allowlist", "CVE-2021-23337"),
    ]
    assert detail["added"] == 9 and detail["source"] == str(FIXTURES)
