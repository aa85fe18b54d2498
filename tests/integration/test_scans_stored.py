"""Stored scans (dockyard.scans), in process on SQLite and PostgreSQL: an image of this machine's real
Debian packages and a real installed wheel, pushed over /v2; advisories naming those packages at their
real versions; the scan stored per artifact with its findings and counts, the summary a pull policy
reads, a rescan after a newer import, the allowlist, and a scan of an unreadable layer stored as failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dockyard.app import build_services, create_app
from dockyard.bootstrap import first_admin
from dockyard.db.base import utcnow
from dockyard.scans import services as scans_module
from dockyard.scans.interfaces import ScanNotFound
from dockyard.scans.models import ScanFindingRow
from dockyard.scans.services import Scans
from dockyard.services import Services
from dockyard.vulndb.services import VulnDB
from tests.integration.test_inventory import OS_RELEASE, os_release, push
from tests.integration.test_scan import advisory
from tests.support.inprocess import ADMIN, ADMIN_PASSWORD, BASE_URL, TestClient, in_process_settings
from tests.support.layers import dist_info, dpkg_stanzas, dpkg_version, file, layer, real
from tests.support.ociclient import OCI_LAYER, OCIClient

DEBS = ["sed", "base-files"]
REPO = "scanned/app"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, TestClient]]:
    settings = in_process_settings(tmp_path_factory.mktemp("scans"))
    services = build_services(settings)
    first_admin(settings, services.db, ADMIN_PASSWORD)
    with TestClient(create_app(services), base_url=BASE_URL, client=("192.0.2.10", 40000)) as http:
        http.auth = ADMIN
        assert http.post("/api/v1/projects", json={"name": "scanned"}).status_code == 201
        yield services, http


@pytest.fixture(scope="module")
def image(stack: tuple[Services, TestClient], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    services, http = stack
    stanzas = dpkg_stanzas(DEBS)
    debs = layer(
        [
            real("usr/lib/os-release", OS_RELEASE),
            file("var/lib/dpkg/status", "\n".join(stanzas[name] for name in DEBS).encode()),
        ]
    )
    wheel = dist_info("httpx")
    apps = layer([real(f"usr/lib/python3/dist-packages/{wheel.name}", wheel)])
    digest = push(OCIClient(http), REPO, "v1", [(OCI_LAYER, debs), (OCI_LAYER, apps)])
    sed = dpkg_version(stanzas["sed"])
    httpx_version = wheel.name.removeprefix("httpx-").removesuffix(".dist-info")
    debian = f"Debian:{os_release()['VERSION_ID']}"
    records = tmp_path_factory.mktemp("osv-1")
    for doc in (
        advisory("TEST-DEB-SED", debian, "sed", f"{sed}+1", "CVE-2099-0101"),
        advisory("TEST-PYPI-HTTPX", "PyPI", "httpx", f"{httpx_version}.post1", "CVE-2099-0103"),
    ):
        (records / f"{doc['id']}.json").write_text(json.dumps(doc))
    VulnDB(services.db).import_paths([records])
    return {"digest": digest, "sed": sed, "httpx": httpx_version, "debian": debian, "layers": (debs, apps)}


def scans(services: Services) -> Scans:
    return Scans(services.db, services.registry, services.blobs, VulnDB(services.db))


def test_a_scan_is_stored_with_the_real_packages_and_read_in_one_row(
    stack: tuple[Services, TestClient], image: dict[str, Any]
) -> None:
    services, _ = stack
    assert scans(services).summary(REPO, image["digest"]) is None  # never scanned: no result
    report = scans(services).scan(REPO, "v1")
    assert report.digest == image["digest"] and report.summary.status == "done"
    by_id = {f.advisory_id: f for f in report.findings}
    assert set(by_id) == {"TEST-DEB-SED", "TEST-PYPI-HTTPX"}
    sed = by_id["TEST-DEB-SED"]
    assert (sed.package, sed.installed_version, sed.fixed_versions) == (
        "sed",
        image["sed"],
        [f"{image['sed']}+1"],
    )
    assert sed.aliases == ["CVE-2099-0101"] and sed.severity == "critical" and sed.cvss_score == 9.8
    assert sed.ecosystem == image["debian"] and sed.layer != by_id["TEST-PYPI-HTTPX"].layer
    assert by_id["TEST-PYPI-HTTPX"].installed_version == image["httpx"]
    summary = scans(services).summary(REPO, image["digest"])
    assert summary is not None and summary.status == "done"
    assert summary.counts == {"critical": 2, "high": 0, "medium": 0, "low": 0, "none": 0, "unknown": 0}
    assert summary.at_or_above("high") == 2 and summary.vulndb_version == report.summary.vulndb_version
    assert scans(services).summary(REPO, "sha256:" + "0" * 64) is None
    assert scans(services).summary("scanned/other", image["digest"]) is None  # per repository


def test_a_newer_import_makes_the_scan_stale_and_a_rescan_replaces_it(
    stack: tuple[Services, TestClient], image: dict[str, Any], tmp_path: Path
) -> None:
    services, _ = stack
    first = scans(services).scan(REPO, image["digest"])
    newer = advisory("TEST-DEB-SED", image["debian"], "sed", image["sed"], "CVE-2099-0101")  # fixed in it
    newer["modified"] = "2026-06-01T00:00:00Z"
    (tmp_path / "sed.json").write_text(json.dumps(newer))
    version = VulnDB(services.db).import_paths([tmp_path]).version
    assert version > (first.summary.vulndb_version or 0)
    assert (REPO, image["digest"]) in scans(services).stale(version)
    again = scans(services).scan(REPO, image["digest"])
    assert [f.advisory_id for f in again.findings] == ["TEST-PYPI-HTTPX"]
    assert again.summary.vulndb_version == version and again.summary.counts is not None
    assert again.summary.counts["critical"] == 1
    assert (REPO, image["digest"]) not in scans(services).stale(version)
    with services.db.read() as conn:  # the old findings went: replaced, not added to
        rows = conn.execute(select(func.count()).select_from(ScanFindingRow)).scalar_one()
    assert rows == 1


def test_the_allowlist_hides_a_finding_until_it_expires(
    stack: tuple[Services, TestClient], image: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, _ = stack
    vulndb = VulnDB(services.db)
    vulndb.allow("CVE-2099-0103", "scanned", expires_at=utcnow() + timedelta(seconds=2))
    try:
        report = scans(services).scan(REPO, image["digest"])
        # Whether sed's advisory still applies depends on the tests before (a newer import fixed it);
        # only httpx's is on the allowlist, and every advisory here is critical.
        allowlisted = {f.advisory_id for f in report.findings if f.allowlisted}
        assert allowlisted == {"TEST-PYPI-HTTPX"}
        others = len(report.findings) - 1
        assert report.summary.counts is not None and report.summary.counts["critical"] == others
        assert report.summary.allowlisted == 1
        # The entry expires (the scans' clock moved past it, no wait for the wall clock): the summary
        # counts the finding again, without a rescan.
        monkeypatch.setattr(scans_module, "utcnow", lambda: utcnow() + timedelta(seconds=3))
        summary = scans(services).summary(REPO, image["digest"])
        assert summary is not None and summary.counts is not None
        assert summary.counts["critical"] == others + 1 and summary.allowlisted == 0
    finally:
        vulndb.disallow("CVE-2099-0103", "scanned")


def test_an_unreadable_layer_is_stored_as_failed_with_the_reason(
    stack: tuple[Services, TestClient], image: dict[str, Any]
) -> None:
    services, http = stack
    broken = push(
        OCIClient(http),
        REPO,
        "broken",
        [
            (OCI_LAYER, image["layers"][0]),
            ("application/vnd.oci.image.layer.v1.tar", b"not a tar archive at all" * 40),
        ],
    )
    report = scans(services).scan(REPO, "broken")
    assert report.summary.status == "failed" and report.summary.counts is None
    assert "unreadable" in report.summary.reason and report.findings == []
    summary = scans(services).summary(REPO, broken)
    assert summary is not None and summary.status == "failed" and summary.at_or_above("low") is None
    with pytest.raises(ScanNotFound):
        scans(services).report(REPO, "sha256:" + "1" * 64)


def test_the_pull_gate_decides_from_the_stored_summary_and_a_new_result_moves_it(
    stack: tuple[Services, TestClient], image: dict[str, Any]
) -> None:
    services, _ = stack
    gate = services.pull_gate
    assert gate is not None and gate.summaries is not None
    gate.policies.set("scanned", block_severity="critical", block_unscanned=True)
    try:
        scanner = Scans(
            services.db,
            services.registry,
            services.blobs,
            VulnDB(services.db),
            on_change=services.verdicts_changed,
        )
        unscanned = push(OCIClient(stack[1]), REPO, "unscanned", [(OCI_LAYER, image["layers"][1])])
        assert "not been scanned" in (gate.check(REPO, unscanned) or "")
        scanner.scan(REPO, unscanned)  # the wheel's layer only: one critical finding (httpx)
        refusal = gate.check(REPO, unscanned)  # decided again: the stored result bumped the feed
        assert refusal is not None and refusal.startswith("1 critical vulnerability"), refusal
        VulnDB(services.db).allow("CVE-2099-0103", "scanned")
        try:
            assert scanner.recount_scope("scanned") >= 1
            assert gate.check(REPO, unscanned) is None  # allowlisted: nothing left to block on
        finally:
            VulnDB(services.db).disallow("CVE-2099-0103", "scanned")
            scanner.recount_scope("scanned")
    finally:
        gate.policies.set("scanned", block_severity="none", block_unscanned=False)
