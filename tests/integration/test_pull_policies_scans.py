"""Vulnerability pull policies against a running server with its job worker: an image of this
machine's real Debian packages and a real wheel's metadata, advisories naming them at their real
versions (one critical, one high), scanned on push. `block_severity` refuses its pull with the count and
the policy (over /v2 and with skopeo), the allowlist honoured after a rescan; `block_unscanned` refuses
what was never scanned."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_scans_api import ADMIN, content, finished, push_image, wait_for
from tests.support.ociclient import describe
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

__all__ = ["content"]  # the fixture: the image's layers and the advisories, imported


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("pull-policy-scans"),
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        assert client.post("/projects", json={"name": "vuln"}).status_code == 201
        assert client.put("/projects/vuln/scan-settings", json={"scan_on_push": True}).status_code == 200
        yield client


def get(server: RunningServer, repo: str, reference: str) -> httpx.Response:
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    return httpx.get(
        f"{server.url}/v2/{repo}/manifests/{reference}", auth=ADMIN, headers=accept, timeout=HTTP_TIMEOUT
    )


def refused_with(server: RunningServer, repo: str, reference: str, message: str, seconds: float = 15) -> None:
    """Decisions that read scans are kept 5 s: wait for the one expected."""
    deadline = time.monotonic() + seconds
    while True:
        answer = get(server, repo, reference)
        if answer.status_code == 403 and answer.json()["errors"][0]["message"] == message:
            assert answer.json()["errors"][0]["code"] == "DENIED"
            return
        assert time.monotonic() < deadline, describe(answer)
        time.sleep(0.3)


def served(server: RunningServer, repo: str, reference: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while (answer := get(server, repo, reference)).status_code != 200:
        assert time.monotonic() < deadline, describe(answer)
        time.sleep(0.3)


def test_block_severity_refuses_with_the_count_and_honours_the_allowlist(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any], tmp_path: Path
) -> None:
    push_image(server, "vuln/app", "v1", content["layers"])
    report = wait_for(finished(admin, "/repositories/vuln/app/artifacts/v1/scan"), "the scan on push")
    assert report["counts"]["critical"] == 1 and report["counts"]["high"] == 1, report
    served(server, "vuln/app", "v1")  # no policy yet
    answer = admin.patch("/projects/vuln", json={"block_severity": "critical"})
    assert answer.status_code == 200, describe(answer)
    assert answer.json()["pull_policy"] == {
        "require_signature": False,
        "block_severity": "critical",
        "block_unscanned": False,
    }
    refused_with(server, "vuln/app", "v1", "1 critical vulnerability (policy: block critical)")
    assert admin.patch("/projects/vuln", json={"block_severity": "high"}).status_code == 200
    message = "2 high or critical vulnerabilities (policy: block high)"
    refused_with(server, "vuln/app", "v1", message)

    # A real client shows the message.
    tools = ContainerTools(tmp_path / "containers")
    try:
        copied = tools.skopeo(
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            ":".join(ADMIN),
            f"docker://{server.host}/vuln/app:v1",
            f"oci:{tmp_path / 'out'}:v1",
            check=False,
        )
    finally:
        tools.cleanup()
    assert copied.returncode != 0 and f"denied: {message}" in copied.stderr, copied.stderr

    # The allowlist: the critical finding allowlisted for the project, the artifact rescanned.
    allowed = admin.put("/projects/vuln/vulndb/allowlist/CVE-2099-0201", json={"reason": "not reachable"})
    assert allowed.status_code in (200, 201), describe(allowed)
    assert admin.patch("/projects/vuln", json={"block_severity": "critical"}).status_code == 200
    requested = admin.post("/repositories/vuln/app/artifacts/v1/scan")
    assert requested.status_code == 202, describe(requested)
    path = "/repositories/vuln/app/artifacts/v1/scan"
    rescanned = wait_for(finished(admin, path, requested.json()["job_id"]), "the rescan")
    assert rescanned["counts"]["critical"] == 0, rescanned
    served(server, "vuln/app", "v1")
    assert admin.patch("/projects/vuln", json={"block_severity": "high"}).status_code == 200
    refused_with(server, "vuln/app", "v1", "1 high or critical vulnerability (policy: block high)")
    assert admin.patch("/projects/vuln", json={"block_severity": "none"}).status_code == 200
    served(server, "vuln/app", "v1")


def test_block_unscanned_refuses_what_has_no_scan(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any]
) -> None:
    assert admin.post("/projects", json={"name": "noscan"}).status_code == 201
    push_image(server, "noscan/app", "v1", content["layers"])
    served(server, "noscan/app", "v1")
    assert admin.patch("/projects/noscan", json={"block_unscanned": True}).status_code == 200
    refused_with(server, "noscan/app", "v1", "artifact has not been scanned (policy: block unscanned)")
    requested = admin.post("/repositories/noscan/app/artifacts/v1/scan")
    assert requested.status_code == 202, describe(requested)
    wait_for(finished(admin, "/repositories/noscan/app/artifacts/v1/scan"), "the scan")
    served(server, "noscan/app", "v1")
    bad = admin.patch("/projects/noscan", json={"block_severity": "severe"})
    assert bad.status_code in (400, 422), describe(bad)


def test_signature_first_then_vulnerabilities(
    server: RunningServer, admin: httpx.Client, content: dict[str, Any]
) -> None:
    assert admin.post("/projects", json={"name": "clipol"}).status_code == 201
    answer = admin.patch(
        "/projects/clipol",
        json={"require_signature": True, "block_severity": "medium", "block_unscanned": True},
    )
    assert answer.json()["pull_policy"] == {
        "require_signature": True,
        "block_severity": "medium",
        "block_unscanned": True,
    }
    push_image(server, "clipol/app", "v1", content["layers"])
    # Unsigned and unscanned: the signature policy is named first.
    refused_with(
        server, "clipol/app", "v1", "artifact is not signed by a trusted key (policy: require signature)"
    )
