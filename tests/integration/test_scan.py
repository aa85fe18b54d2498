"""`dockyard scan` against a real server: an image of this machine's real files (Debian packages with
their dpkg stanzas, a real installed wheel's metadata) pushed over /v2, advisories naming those real
packages and versions imported with `dockyard vulndb import`, then the findings with their layers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_inventory import OS_RELEASE, os_release, push
from tests.support.cli import run_dockyard
from tests.support.layers import dist_info, dpkg_stanzas, dpkg_version, file, layer, real
from tests.support.ociclient import OCI_LAYER, OCIClient
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vulndb"
DEBS = ["sed", "base-files"]


def run(server: RunningServer, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_dockyard(*args, "--config", server.config_path)


def advisory(ident: str, ecosystem: str, name: str, fixed: str, alias: str) -> dict[str, Any]:
    return {
        "id": ident,
        "modified": "2026-01-01T00:00:00Z",
        "aliases": [alias],
        "summary": f"test: {name}",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
    }


@pytest.fixture(scope="module")
def image(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stanzas = dpkg_stanzas(DEBS)
    debs = layer(
        [
            real("usr/lib/os-release", OS_RELEASE),
            file("var/lib/dpkg/status", "\n".join(stanzas[name] for name in DEBS).encode()),
        ]
    )
    wheel = dist_info("httpx")
    apps = layer([real(f"usr/lib/python3/dist-packages/{wheel.name}", wheel)])
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        digest = push(OCIClient(http), "scan/app", "v1", [(OCI_LAYER, debs), (OCI_LAYER, apps)])
    sed, base_files = dpkg_version(stanzas["sed"]), dpkg_version(stanzas["base-files"])
    httpx_version = wheel.name.removeprefix("httpx-").removesuffix(".dist-info")
    debian = f"Debian:{os_release()['VERSION_ID']}"
    records = tmp_path_factory.mktemp("osv")
    for doc in (
        advisory("TEST-DEB-SED", debian, "sed", f"{sed}+1", "CVE-2099-0001"),  # just after the real one
        advisory("TEST-DEB-BASE-FILES", debian, "base-files", base_files, "CVE-2099-0002"),  # fixed in it
        advisory("TEST-PYPI-HTTPX", "PyPI", "HTTPX", f"{httpx_version}.post1", "CVE-2099-0003"),
        advisory("TEST-DEB-OTHER-RELEASE", "Debian:9", "sed", f"{sed}+1", "CVE-2099-0004"),
    ):
        (records / f"{doc['id']}.json").write_text(json.dumps(doc))
    imported = run(server, "vulndb", "import", FIXTURES, records)
    assert imported.returncode == 0, imported.stderr
    return {"digest": digest, "sed": sed, "httpx": httpx_version, "debian": debian}


def scan_json(server: RunningServer, *args: str) -> dict[str, Any]:
    done = run(server, "scan", "scan/app:v1", "--json", *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_scan_finds_the_real_packages_at_their_real_versions(
    server: RunningServer, image: dict[str, Any]
) -> None:
    report = scan_json(server)
    assert report["digest"] == image["digest"] and report["vulndb_version"] >= 1
    (result,) = report["images"]
    by_id = {f["id"]: f for f in result["findings"]}
    assert set(by_id) == {"TEST-DEB-SED", "TEST-PYPI-HTTPX"}
    sed = by_id["TEST-DEB-SED"]
    assert (sed["package"], sed["installed_version"], sed["fixed_versions"]) == (
        "sed",
        image["sed"],
        [f"{image['sed']}+1"],
    )
    assert sed["ecosystem"] == image["debian"] and sed["severity"] == "critical"
    assert sed["path"] == "var/lib/dpkg/status"
    wheel = by_id["TEST-PYPI-HTTPX"]
    assert wheel["installed_version"] == image["httpx"] and wheel["purl"].startswith("pkg:pypi/httpx@")
    assert sed["layer"] != wheel["layer"]  # each finding names the layer that added its package
    assert result["summary"]["critical"] == 2


def test_the_project_allowlist_applies_to_its_repositories(
    server: RunningServer, image: dict[str, Any]
) -> None:
    allowed = run(server, "vulndb", "allow", "CVE-2099-0003", "--project", "scan")
    assert allowed.returncode == 0, allowed.stderr
    try:
        ids = [f["id"] for f in scan_json(server)["images"][0]["findings"]]
        assert ids == ["TEST-DEB-SED"]
        shown = scan_json(server, "--show-allowlisted")["images"][0]
        assert {f["id"]: f["allowlisted"] for f in shown["findings"]} == {
            "TEST-DEB-SED": False,
            "TEST-PYPI-HTTPX": True,
        }
        assert shown["summary"]["critical"] == 1
    finally:
        assert run(server, "vulndb", "disallow", "CVE-2099-0003", "--project", "scan").returncode == 0


def test_the_table_names_layers_and_errors_are_plain(server: RunningServer, image: dict[str, Any]) -> None:
    table = run(server, "scan", "scan/app:v1")
    assert table.returncode == 0, table.stderr
    assert "2 critical" in table.stdout
    line = next(line for line in table.stdout.splitlines() if "TEST-DEB-SED" in line)
    assert line.split()[-1] == "1" and image["sed"] in line  # the first layer
    missing = run(server, "scan", "scan/app:nope")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    nowhere = run(server, "scan", "scan/app:v1", "--project", "nope")
    assert nowhere.returncode == 1 and "nope" in nowhere.stderr
