"""dockyard's scanner served through the Harbor pluggable scanner API v1.1 on a running server with its
job worker: metadata, a scan request answered 202 and its report polled until it is there (and the same
findings as the built-in scan's stored report), and the abuse cases: no or wrong credentials (401), a
body that is not a ScanRequest (400, the spec's error body), a registry URL that is not this registry
(422, nothing fetched: the SSRF guard), an unknown scan id (404)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_scans_api import ADMIN, content, push_image, wait_for  # noqa: F401  (a fixture)
from tests.support.server import RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT

TOKEN = "scanner-api-token-0123456789"
REPORT = "application/vnd.security.vulnerability.report; version=1.1"
ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    port = free_port()
    scanner_api = {"enabled": True, "token": TOKEN, "username": "harbor", "password": "harbor-Pw-1"}
    # Other registries a request may name: this server as `localhost` (see the test), and a private one.
    scanner_api["allowed_registries"] = [f"http://localhost:{port}", "http://10.0.0.1"]
    running = start_server(
        tmp_path_factory.mktemp("scanner-api"),
        {
            "http": {"addr": f"127.0.0.1:{port}"},
            "auth": {"enabled": True},
            "jobs": {"run_in_serve": True},
            "scanner_api": scanner_api,
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def adapter(server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(
        base_url=f"{server.url}/scanner/api/v1", headers=headers, timeout=HTTP_TIMEOUT
    ) as client:
        yield client


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        assert client.post("/projects", json={"name": "team"}).status_code == 201
        yield client


def scan_request(url: str, repository: str, digest: str, **artifact: Any) -> dict[str, Any]:
    return {
        "registry": {"url": url, "authorization": "Basic cm9ib3Q6c2VjcmV0"},
        "artifact": {"repository": repository, "digest": digest, **artifact},
    }


def assert_error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == ERROR
    message = answer.json()["error"]["message"]
    assert isinstance(message, str) and message
    return message


def poll_report(adapter: httpx.Client, scan_id: str) -> httpx.Response:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answer = adapter.get(f"/scan/{scan_id}/report", headers={"Accept": REPORT})
        if answer.status_code != 302:
            return answer
        assert int(answer.headers["Refresh-After"]) > 0
        time.sleep(0.1)
    raise AssertionError("the report never came")


def test_metadata_names_the_scanner_and_its_capabilities(adapter: httpx.Client) -> None:
    answer = adapter.get("/metadata")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.scanner.adapter.metadata+json; version=1.0"
    body = answer.json()
    assert body["scanner"]["name"] == "dockyard"
    (capability,) = body["capabilities"]
    assert "application/vnd.oci.image.manifest.v1+json" in capability["consumes_mime_types"]
    assert "application/vnd.docker.distribution.manifest.v2+json" in capability["consumes_mime_types"]
    assert REPORT in capability["produces_mime_types"]
    assert body["properties"]["harbor.scanner-adapter/scanner-type"] == "os-package-vulnerability"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}x", "Basic aGFyYm9yOndyb25n", "Basic !!!", TOKEN],
)
def test_no_or_wrong_credentials_are_refused(server: RunningServer, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/metadata"), ("POST", "/scan"), ("GET", "/scan/1/report")):
        answer = httpx.request(
            method, f"{server.url}/scanner/api/v1{path}", headers=headers, json={}, timeout=HTTP_TIMEOUT
        )
        assert_error(answer, 401)
        assert "WWW-Authenticate" in answer.headers


def test_basic_credentials_work_too(server: RunningServer) -> None:
    answer = httpx.get(
        f"{server.url}/scanner/api/v1/metadata", auth=("harbor", "harbor-Pw-1"), timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text


def test_a_scan_request_is_answered_with_the_same_findings_as_the_built_in_scan(
    server: RunningServer,
    adapter: httpx.Client,
    admin: httpx.Client,
    content: dict[str, Any],  # noqa: F811
) -> None:
    digest = push_image(server, "team/app", "v1", content["layers"])
    mime = "application/vnd.oci.image.manifest.v1+json"
    answer = adapter.post(
        "/scan", json=scan_request(server.url, "team/app", digest, tag="v1", mime_type=mime)
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["content-type"] == "application/vnd.scanner.adapter.scan.response+json; version=1.0"
    scan_id = answer.json()["id"]
    assert isinstance(scan_id, str)
    report = poll_report(adapter, scan_id)
    assert report.status_code == 200, report.text
    assert report.headers["content-type"] == REPORT
    body = report.json()
    assert body["artifact"]["repository"] == "team/app" and body["artifact"]["digest"] == digest
    assert body["scanner"]["name"] == "dockyard" and body["severity"] == "Critical"
    # The scan was dockyard's own: its stored report has the same findings.
    stored = admin.get("/repositories/team/app/artifacts/v1/scan").json()
    assert stored["status"] == "done"
    served = {
        (v["vendor_attributes"]["dockyard"]["advisory_id"], v["package"], v["version"], v["severity"])
        for v in body["vulnerabilities"]
    }
    levels = {"critical": "Critical", "high": "High"}
    assert served == {
        (f["advisory_id"], f["package"], f["installed_version"], levels[f["severity"]])
        for f in stored["findings"]
    }
    assert {v["id"] for v in body["vulnerabilities"]} == {"CVE-2099-0201", "CVE-2099-0203"}
    # The 1.0 report type is served too; one that is not produced is refused.
    old = adapter.get(
        f"/scan/{scan_id}/report",
        headers={"Accept": "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"},
    )
    assert old.status_code == 200 and old.json()["vulnerabilities"] == body["vulnerabilities"]
    assert_error(adapter.get(f"/scan/{scan_id}/report", headers={"Accept": "text/html"}), 400)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"registry": "x", "artifact": {}}',
        b'{"registry": {"url": 5}, "artifact": {"repository": "team/app", "digest": "sha256:00"}}',
        b'{"artifact": {"repository": "team/app"}}',
    ],
)
def test_a_body_that_is_not_a_scan_request_is_400(adapter: httpx.Client, body: bytes) -> None:
    answer = adapter.post("/scan", content=body, headers={"Content-Type": "application/json"})
    assert_error(answer, 400)


def test_fields_that_are_not_acceptable_are_422(server: RunningServer, adapter: httpx.Client) -> None:
    digest = "sha256:" + "0" * 64
    for body in (
        scan_request(server.url, "team/app", "sha256:1234"),
        scan_request(server.url, "Team/../App", digest),
        scan_request(server.url, "team/app", digest, mime_type="application/vnd.cncf.helm.config.v1+json"),
        scan_request(server.url, "team/app", digest),  # no such artifact here
    ):
        assert_error(adapter.post("/scan", json=body), 422)
    assert_error(adapter.post("/scan", content=b"x" * 70_000), 400)  # over the body limit


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "http://127.0.0.1:1",  # loopback, another port than this registry's
        "http://localhost:9",
        "http://10.0.0.1",
        "https://registry-1.docker.io",  # a public registry: not this one, not allowed either
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http://user:pass@127.0.0.1/",
    ],
)
def test_a_registry_that_is_not_this_one_is_refused_without_being_fetched(
    adapter: httpx.Client, url: str
) -> None:
    body = scan_request(url, "team/app", "sha256:" + "0" * 64)
    message = assert_error(adapter.post("/scan", json=body), 422)
    assert "registry.url" in message


def test_an_unknown_scan_id_is_404(adapter: httpx.Client) -> None:
    for scan_id in ("999999", "abc", "-1", "1" * 40, "%2e%2e"):
        answer = adapter.get(f"/scan/{scan_id}/report", headers={"Accept": REPORT})
        assert answer.status_code == 404, (scan_id, answer.text)
    assert adapter.get("/nothing").status_code == 404


def test_an_allowed_other_registry_is_pulled_from_with_the_requests_authorization(
    server: RunningServer, adapter: httpx.Client, admin: httpx.Client, content: dict[str, Any]  # noqa: F811
) -> None:
    # localhost:PORT is this same server under a name it does not answer to as itself: an allowed
    # other registry (scanner_api.allowed_registries), reached through the address guard (127.0.0.0/8
    # is in upstream.allowed_networks), pulled over HTTP with the request's Basic credentials.
    digest = push_image(server, "team/remote", "v1", content["layers"])
    other = f"http://localhost:{server.url.rsplit(':', 1)[1]}"
    basic = "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    body = scan_request(other, "team/remote", digest, tag="v1")
    body["registry"]["authorization"] = basic
    answer = adapter.post("/scan", json=body)
    assert answer.status_code == 202, answer.text
    report = poll_report(adapter, answer.json()["id"])
    assert report.status_code == 200, report.text
    served = report.json()
    assert served["artifact"] == {"repository": "team/remote", "digest": digest, "tag": "v1"}
    assert {v["id"] for v in served["vulnerabilities"]} == {"CVE-2099-0201", "CVE-2099-0203"}
    # Not stored as a scan of this registry's team/remote: the request was for another registry.
    assert admin.get("/repositories/team/remote/artifacts/v1/scan").status_code == 404
    # Without credentials the other registry refuses the pull: a failed scan (500 with the reason).
    body["registry"].pop("authorization")
    failed = poll_report(adapter, adapter.post("/scan", json=body).json()["id"])
    assert_error(failed, 500)
    # A scheme the pull could not use is refused at once.
    body["registry"]["authorization"] = "Digest abc"
    assert_error(adapter.post("/scan", json=body), 422)


def test_an_allowed_registry_on_a_refused_network_is_still_refused(adapter: httpx.Client) -> None:
    body = scan_request("http://10.0.0.1", "team/app", "sha256:" + "0" * 64)  # allowed, but private
    assert "may not fetch from" in assert_error(adapter.post("/scan", json=body), 422)
