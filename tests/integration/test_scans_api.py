"""Scans on a running server with its job worker: scan on push, on demand through the API, the summary
on artifact listings, and a rescan queued by `dockyard vulndb import` that changes the stored result.
The image holds this machine's real Debian packages (with their dpkg stanzas) and a real wheel's
metadata; the advisories name them at their real versions."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_inventory import OS_RELEASE, os_release, push
from tests.integration.test_scan import advisory
from tests.support.cli import run_dockyard
from tests.support.layers import dist_info, dpkg_stanzas, dpkg_version, file, layer, real
from tests.support.ociclient import OCI_LAYER, OCIClient
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "scans-Passw0rd-1")
DEBS = ["sed", "base-files"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("scans"),
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        for project in ("onpush", "ondemand"):
            assert client.post("/projects", json={"name": project}).status_code == 201
        yield client


def cli(server: RunningServer, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_dockyard(*args, "--config", server.config_path)


@pytest.fixture(scope="module")
def content(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stanzas = dpkg_stanzas(DEBS)
    debs = layer(
        [
            real("usr/lib/os-release", OS_RELEASE),
            file("var/lib/dpkg/status", "\n".join(stanzas[name] for name in DEBS).encode()),
        ]
    )
    wheel = dist_info("httpx")
    apps = layer([real(f"usr/lib/python3/dist-packages/{wheel.name}", wheel)])
    sed = dpkg_version(stanzas["sed"])
    httpx_version = wheel.name.removeprefix("httpx-").removesuffix(".dist-info")
    debian = f"Debian:{os_release()['VERSION_ID']}"
    records = tmp_path_factory.mktemp("osv")
    for doc in (
        advisory("TEST-DEB-SED", debian, "sed", f"{sed}+1", "CVE-2099-0201"),
        advisory("TEST-PYPI-HTTPX", "PyPI", "httpx", f"{httpx_version}.post1", "CVE-2099-0203"),
    ):
        doc["severity"] = []  # no CVSS: the severity comes from database_specific below
        doc["database_specific"] = {"severity": "HIGH" if doc["id"] == "TEST-PYPI-HTTPX" else "CRITICAL"}
        (records / f"{doc['id']}.json").write_text(json.dumps(doc))
    imported = cli(server, "vulndb", "import", records)
    assert imported.returncode == 0, imported.stderr
    return {"layers": [(OCI_LAYER, debs), (OCI_LAYER, apps)], "sed": sed, "debian": debian}


def push_image(server: RunningServer, repo: str, tag: str, layers: list[tuple[str, bytes]]) -> str:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        return push(OCIClient(http), repo, tag, layers)


def wait_for(check: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def finished(admin: httpx.Client, path: str, job_id: int | None = None) -> Callable[[], Any]:
    def check() -> Any:
        answer = admin.get(path)
        if answer.status_code != 200:
            return None
        body = answer.json()
        done = body["status"] in ("done", "failed") and (job_id is None or body["job_id"] == job_id)
        return body if done else None

    return check


def recounted(admin: httpx.Client, project: str) -> bool:
    """Whether the newest job applying `project`'s allowlist to its stored scans (queued by a change of
    that allowlist) has finished."""
    jobs = admin.get("/jobs", params={"kind": "scan"}).json()
    newest = next((job for job in jobs if job["params"] == {"recount": project}), None)
    assert newest is not None, jobs
    assert newest["status"] not in ("failed", "cancelled"), newest
    return bool(newest["status"] == "succeeded")


def test_a_push_to_a_project_that_scans_on_push_stores_the_findings(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any]
) -> None:
    assert admin.get("/projects/onpush/scan-settings").json() == {"project": "onpush", "scan_on_push": False}
    answer = admin.put("/projects/onpush/scan-settings", json={"scan_on_push": True})
    assert answer.status_code == 200, answer.text
    digest = push_image(server, "onpush/app", "v1", content["layers"])
    # The push queued the scan before it was answered (the job and its pending status commit together):
    # the artifact has a scan at once, pending or further.
    queued = admin.get("/repositories/onpush/app/artifacts/v1/scan")
    assert queued.status_code == 200, queued.text
    assert queued.json()["status"] in ("pending", "running", "done"), queued.text
    report = wait_for(finished(admin, "/repositories/onpush/app/artifacts/v1/scan"), "the scan on push")
    assert report["digest"] == digest and report["status"] == "done", report
    by_id = {f["advisory_id"]: f for f in report["findings"]}
    assert set(by_id) == {"TEST-DEB-SED", "TEST-PYPI-HTTPX"}
    sed = by_id["TEST-DEB-SED"]
    assert (sed["package"], sed["installed_version"], sed["ecosystem"]) == (
        "sed",
        content["sed"],
        content["debian"],
    )
    assert sed["aliases"] == ["CVE-2099-0201"] and sed["fixed_versions"] == [f"{content['sed']}+1"]
    assert sed["layer"] != by_id["TEST-PYPI-HTTPX"]["layer"]  # each names the layer that added it
    assert report["counts"]["critical"] == 1 and report["counts"]["high"] == 1
    high = admin.get("/repositories/onpush/app/artifacts/v1/scan", params={"severity": "critical"}).json()
    assert [f["advisory_id"] for f in high["findings"]] == ["TEST-DEB-SED"]
    assert (
        admin.get("/repositories/onpush/app/artifacts/v1/scan", params={"severity": "bad"}).status_code == 400
    )
    # The listings carry the summary.
    (listed,) = admin.get("/repositories/onpush/app/artifacts").json()
    assert listed["scan"]["status"] == "done" and listed["scan"]["counts"]["critical"] == 1
    assert admin.get("/repositories/onpush/app/artifacts/v1").json()["scan"]["counts"]["high"] == 1


def test_a_scan_on_demand_and_a_rescan_after_an_import_that_changes_the_result(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any], tmp_path: Path
) -> None:
    digest = push_image(server, "ondemand/app", "v1", content["layers"])
    path = "/repositories/ondemand/app/artifacts/v1/scan"
    # No scan on push in this project: nothing was queued (a push to `onpush` has its scan at once,
    # see the test above), so nothing appears, now or later.
    missing = admin.get(path)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "NOT_FOUND"
    (listed,) = admin.get("/repositories/ondemand/app/artifacts").json()
    assert listed["scan"] is None
    requested = admin.post(path)
    assert requested.status_code == 202, requested.text
    assert requested.json()["digest"] == digest
    first = wait_for(finished(admin, path, requested.json()["job_id"]), "the scan on demand")
    assert {f["advisory_id"] for f in first["findings"]} == {"TEST-DEB-SED", "TEST-PYPI-HTTPX"}
    # An advisory update: sed is fixed in the installed version after all.
    fixed = advisory("TEST-DEB-SED", content["debian"], "sed", content["sed"], "CVE-2099-0201")
    fixed["modified"] = "2026-09-01T00:00:00Z"
    (tmp_path / "sed.json").write_text(json.dumps(fixed))
    imported = cli(server, "vulndb", "import", tmp_path, "--json")
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["changed"] and result["rescan_job"]

    def rescanned() -> Any:
        body = admin.get(path).json()
        return body if body["vulndb_version"] == result["version"] and body["status"] == "done" else None

    again = wait_for(rescanned, "the rescan after the import")
    assert [f["advisory_id"] for f in again["findings"]] == ["TEST-PYPI-HTTPX"]
    assert again["counts"]["critical"] == 0 and again["counts"]["high"] == 1
    job = admin.get(f"/jobs/{result['rescan_job']}").json()
    assert job["kind"] == "scan" and job["params"] == {"rescan": "stale"}
    # `dockyard scan` stores its result too (the same one here), its output as before.
    scanned = cli(server, "scan", "ondemand/app:v1", "--json")
    assert scanned.returncode == 0, scanned.stderr
    assert json.loads(scanned.stdout)["stored"] == {"status": "done", "reason": ""}
    assert admin.get(path).json()["job_id"] is None  # the CLI's scan, not a job's


def test_an_unreadable_layer_is_reported_as_a_failed_scan(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any]
) -> None:
    broken = [content["layers"][0], ("application/vnd.oci.image.layer.v1.tar", b"not a tar at all " * 64)]
    push_image(server, "onpush/broken", "v1", broken)  # scanned on push
    report = wait_for(finished(admin, "/repositories/onpush/broken/artifacts/v1/scan"), "the failed scan")
    assert report["status"] == "failed" and report["counts"] is None and report["findings"] == []
    assert "unreadable" in report["reason"] and report["scanner"] == "built-in"
    (listed,) = admin.get("/repositories/onpush/broken/artifacts").json()
    assert listed["scan"]["status"] == "failed" and listed["scan"]["counts"] is None
    denied = httpx.post(
        f"{server.url}/api/v1/repositories/onpush/broken/artifacts/v1/scan", timeout=HTTP_TIMEOUT
    )
    assert denied.status_code == 401
    unknown = admin.post("/repositories/onpush/broken/artifacts/v9/scan")
    assert unknown.status_code == 404
    # Counted by status: a scan that cannot read the image is a job that succeeded.
    metrics = httpx.get(f"{server.url}/metrics", auth=ADMIN, timeout=HTTP_TIMEOUT).text
    series = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("scans_total")
    }
    assert series.get('scans_total{status="failed"}', 0) >= 1, series
    assert set(series) <= {'scans_total{status="done"}', 'scans_total{status="failed"}'}, series


def test_an_allowlist_change_applies_to_stored_scans_without_a_rescan(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any]
) -> None:
    path = "/repositories/onpush/app/artifacts/v1/scan"
    before = wait_for(finished(admin, path), "the scan on push")
    assert before["counts"]["high"] == 1 and before["allowlisted"] == 0
    # Another project's allowlist hides nothing here.
    assert admin.put("/projects/ondemand/vulndb/allowlist/CVE-2099-0203", json={}).status_code == 200
    wait_for(lambda: recounted(admin, "ondemand"), "the recount of the other project's scans")
    assert admin.get(path).json()["counts"]["high"] == 1
    allowed = admin.put("/projects/onpush/vulndb/allowlist/CVE-2099-0203", json={"reason": "not reachable"})
    assert allowed.status_code == 200, allowed.text
    try:
        hidden = wait_for(
            lambda: (body := admin.get(path).json())["allowlisted"] == 1 and body, "the allowlist applied"
        )
        assert hidden["counts"]["high"] == 0 and hidden["job_id"] == before["job_id"]  # not scanned again
        assert [f["allowlisted"] for f in hidden["findings"] if f["advisory_id"] == "TEST-PYPI-HTTPX"] == [
            True
        ]
        (listed,) = admin.get("/repositories/onpush/app/artifacts").json()
        assert listed["scan"]["counts"]["high"] == 0 and listed["scan"]["allowlisted"] == 1
    finally:
        assert admin.delete("/projects/onpush/vulndb/allowlist/CVE-2099-0203").status_code == 204
        admin.delete("/projects/ondemand/vulndb/allowlist/CVE-2099-0203")
    back = wait_for(
        lambda: (body := admin.get(path).json())["allowlisted"] == 0 and body, "the entry removed"
    )
    assert back["counts"]["high"] == 1


def test_a_scheduled_rescan_of_everything_and_bad_job_params(
    server: RunningServer, admin: httpx.Client
) -> None:
    path = "/repositories/onpush/app/artifacts/v1/scan"
    before = wait_for(finished(admin, path), "the scan on push")
    job = admin.post("/jobs", json={"kind": "scan", "params": {"rescan": "all"}})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    wait_for(lambda: admin.get(f"/jobs/{job_id}").json()["status"] == "succeeded", "the rescan job")
    after = admin.get(path).json()
    assert after["job_id"] == job_id and after["scanned_at"] > before["scanned_at"]
    schedule = admin.put("/jobs/schedules/scan", json={"cron": "0 3 * * *", "params": {"rescan": "all"}})
    assert schedule.status_code == 200, schedule.text
    bad = admin.post("/jobs", json={"kind": "scan", "params": {"rescan": "sometimes"}})
    bad_id = bad.json()["id"]
    # It fails on its first attempt, naming the parameter: the scan kind allows one (the runner applies
    # the kind's limit to a job an HTTP worker queued).
    failed = wait_for(lambda: (j := admin.get(f"/jobs/{bad_id}").json())["error"] and j, "a bad job")
    assert (failed["status"], failed["attempts"]) == ("failed", 1), failed
    assert "rescan" in failed["error"], failed
