"""External scanners on a running server: `dockyard scanner add|list|default|test|delete`, and scan
jobs that send a Harbor pluggable scanner API ScanRequest to the default scanner and store its report
as the artifact's scan.

- The same server's own adapter (/scanner, `scanner_api`) as the external scanner: the stored result
  equals the built-in scan of the same image (in another repository).
- A fake adapter (a small HTTP server in the test) checks the pull credential it is handed: a bearer
  token that pulls the scanned repository, not another, and dies when the scan ends; and answers
  garbage, which is stored as a failed scan with the reason, never as "no vulnerabilities".
- An adapter that is down, or refuses the credentials: failed scans, a failed test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import Cli
from tests.integration.test_scans_api import ADMIN, content, push_image, wait_for  # noqa: F401  (a fixture)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

TOKEN = "external-scanner-token-0123456789"
KEYS = ("advisory_id", "aliases", "package", "installed_version", "fixed_versions", "severity", "ecosystem",
        "layer", "path", "purl", "image", "platform", "cvss_score", "cvss_vector", "summary")  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("external-scanners"),
        {
            "auth": {"enabled": True},
            "jobs": {"run_in_serve": True, "threads": 3},
            "scanner_api": {"enabled": True, "token": TOKEN},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        assert client.post("/projects", json={"name": "team"}).status_code == 201
        yield client


@pytest.fixture(scope="module")
def cli(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("cli") / "home"
    home.mkdir()
    cli = Cli(home)
    cli.login(server.url, *ADMIN)
    return cli


def scan(admin: httpx.Client, repository: str, tag: str) -> dict[str, Any]:
    answer = admin.post(f"/repositories/{repository}/artifacts/{tag}/scan")
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]

    def finished() -> Any:
        job = admin.get(f"/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, f"scan job {job_id}", 120)
    assert job["status"] == "succeeded", job
    report = admin.get(f"/repositories/{repository}/artifacts/{tag}/scan").json()
    assert report["job_id"] == job_id, report
    return {"job": job, "report": report}


def comparable(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(json.dumps(f[k]) for k in KEYS) for f in report["findings"])


def test_the_same_servers_adapter_as_external_scanner_stores_what_the_built_in_scan_does(
    server: RunningServer,
    admin: httpx.Client,
    cli: Cli,
    content: dict[str, Any],  # noqa: F811
) -> None:
    push_image(server, "team/builtin", "v1", content["layers"])
    push_image(server, "team/app", "v1", content["layers"])
    assert cli.json("scanner", "default") == {"scanner": "built-in"}
    built_in = scan(admin, "team/builtin", "v1")
    assert built_in["job"]["result"]["scanner"] == "built-in"

    added = cli.json("scanner", "add", "self", "--url", f"{server.url}/scanner", "--token", "--secret-stdin",
                     "--registry-url", server.url, "--default", stdin=TOKEN + "\n")  # fmt: skip
    assert (added["auth"], added["has_secret"], added["is_default"]) == ("token", True, True)
    assert TOKEN not in cli.ok("scanner", "list") and "self" in cli.ok("scanner", "list")
    assert "answers: dockyard" in cli.ok("scanner", "test", "self")
    assert cli.json("scanner", "default") == {"scanner": "self"}

    external = scan(admin, "team/app", "v1")
    assert external["job"]["result"]["scanner"] == "self"
    stored, expected = external["report"], built_in["report"]
    assert stored["status"] == "done" and stored["counts"] == expected["counts"]
    assert stored["counts"]["critical"] == 1 and stored["counts"]["high"] == 1
    assert comparable(stored) == comparable(expected) and len(stored["findings"]) == 2
    # Each stored result says which scanner made it, and so does the listing's summary.
    assert (expected["scanner"], stored["scanner"]) == ("built-in", "self")
    (listed,) = admin.get("/repositories/team/app/artifacts").json()
    assert listed["scan"]["scanner"] == "self"
    # Listings and pull policies read the same summary.
    (listed,) = admin.get("/repositories/team/app/artifacts").json()
    assert listed["scan"]["counts"] == expected["counts"]
    # The adapter's own scan job ran with the built-in scanner (no loop back to "self").
    jobs = admin.get("/jobs", params={"kind": "scan", "page_size": 100}).json()
    assert any(j["params"].get("scanner") == "built-in" for j in jobs)


class FakeAdapter:
    """A pluggable scanner API adapter that records the scan request, checks the pull token it was
    given against the registry, and answers `mode`: a valid report, garbage, or an error."""

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self.mode = "valid"
        self.requests: list[dict[str, Any]] = []
        self.pulls: dict[str, int] = {}
        self.polls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = (
                    b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                )
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != "Bearer fake-adapter-token":
                    return self.answer(401, {"error": {"message": "unauthorized"}})
                if self.path == "/api/v1/metadata":
                    return self.answer(200, {"scanner": {"name": "fake", "vendor": "t", "version": "1"},
                                             "capabilities": []})  # fmt: skip
                fake.polls += 1
                if fake.polls == 1:
                    return self.answer(302, None, {"Refresh-After": "1"})
                if fake.mode == "garbage":
                    return self.answer(200, {"vulnerabilities": "none at all"})
                if fake.mode == "error":
                    return self.answer(500, {"error": {"message": "the fake scanner broke"}})
                artifact = fake.requests[-1]["artifact"]
                return self.answer(200, {
                    "artifact": artifact,
                    "vulnerabilities": [{"id": "CVE-2099-1111", "package": "zlib", "version": "1.2",
                                         "fix_version": "1.3", "severity": "Medium", "description": "fake"}],
                })  # fmt: skip

            def do_POST(self) -> None:
                if self.headers.get("Authorization") != "Bearer fake-adapter-token":
                    return self.answer(401, {"error": {"message": "unauthorized"}})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.polls = 0
                pull = {"Authorization": body["registry"]["authorization"],
                        "Accept": "application/vnd.oci.image.manifest.v1+json"}  # fmt: skip
                digest = body["artifact"]["digest"]
                for repository in (body["artifact"]["repository"], "team/builtin"):
                    answer = httpx.get(
                        f"{fake.registry}/v2/{repository}/manifests/{digest}",
                        headers=pull,
                        timeout=HTTP_TIMEOUT,
                    )
                    fake.pulls[repository] = answer.status_code
                return self.answer(202, {"id": "fake-1"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake(server: RunningServer, cli: Cli) -> Iterator[FakeAdapter]:
    adapter = FakeAdapter(server.url)
    cli.ok("scanner", "add", "fake", "--url", adapter.url, "--token", "--secret-stdin",
           "--scan-timeout", "30", "--registry-url", server.url, "--default",
           stdin="fake-adapter-token\n")  # fmt: skip
    yield adapter
    cli.ok("scanner", "delete", "fake", "--yes")
    adapter.close()


def test_the_adapter_gets_a_token_that_pulls_that_repository_only_and_dies_with_the_scan(
    server: RunningServer,
    admin: httpx.Client,
    fake: FakeAdapter,
    content: dict[str, Any],  # noqa: F811
) -> None:
    digest = push_image(server, "team/pulled", "v1", content["layers"])
    push_image(server, "team/builtin", "v1", content["layers"])
    result = scan(admin, "team/pulled", "v1")
    (request,) = fake.requests
    assert request["registry"]["url"] == server.url
    assert request["artifact"] == {"repository": "team/pulled", "digest": digest,
                                   "mime_type": "application/vnd.oci.image.manifest.v1+json"}  # fmt: skip
    assert request["registry"]["authorization"].startswith("Bearer ")
    assert fake.pulls["team/builtin"] in (401, 403)  # another repository of the same project
    assert fake.pulls["team/pulled"] == 200
    # The scan's robot is gone, and its token with it.
    pull = {"Authorization": request["registry"]["authorization"]}
    after = httpx.get(f"{server.url}/v2/team/pulled/manifests/{digest}", headers=pull, timeout=HTTP_TIMEOUT)
    assert after.status_code == 401, after.text
    robots = admin.get("/robots", params={"page_size": 100}).json()
    assert not [r for r in robots if "scan-" in r["name"]]
    # The fake's one finding is stored.
    report = result["report"]
    assert report["status"] == "done" and report["counts"]["medium"] == 1
    (finding,) = report["findings"]
    assert (finding["advisory_id"], finding["package"], finding["fixed_versions"]) == (
        "CVE-2099-1111",
        "zlib",
        ["1.3"],
    )


@pytest.mark.parametrize(("mode", "reason"), [("garbage", "not a list"), ("error", "the fake scanner broke")])
def test_a_report_that_is_not_one_is_a_failed_scan_never_no_vulnerabilities(
    server: RunningServer, admin: httpx.Client, fake: FakeAdapter, content: dict[str, Any],  # noqa: F811
    mode: str, reason: str,
) -> None:  # fmt: skip
    push_image(server, "team/bad", "v1", content["layers"])
    fake.mode = mode
    report = scan(admin, "team/bad", "v1")["report"]
    assert report["status"] == "failed" and report["counts"] is None and report["findings"] == []
    assert "scanner fake" in report["reason"] and reason in report["reason"], report["reason"]
    assert report["scanner"] == "fake"


def test_an_adapter_that_is_down_or_refuses_the_credentials(
    server: RunningServer,
    admin: httpx.Client,
    cli: Cli,
    content: dict[str, Any],  # noqa: F811
) -> None:
    push_image(server, "team/down", "v1", content["layers"])
    cli.ok("scanner", "add", "down", "--url", "http://127.0.0.1:1", "--request-timeout", "2", "--default")
    report = scan(admin, "team/down", "v1")["report"]
    assert report["status"] == "failed" and report["counts"] is None
    assert "scanner down" in report["reason"]
    assert "failed its check" in cli.fails("scanner", "test", "down")

    cli.ok("scanner", "add", "wrongauth", "--url", f"{server.url}/scanner", "--token", "--secret-stdin",
           stdin="not-the-token\n")  # fmt: skip
    assert "401" in cli.fails("scanner", "test", "wrongauth")
    cli.ok("scanner", "default", "built-in")
    for name in ("down", "wrongauth"):
        cli.ok("scanner", "delete", name, "--yes")


def test_registrations_are_checked(cli: Cli, admin: httpx.Client) -> None:
    assert "may not fetch from" in cli.fails("scanner", "add", "meta", "--url", "http://169.254.169.254/")
    assert "url" in cli.fails("scanner", "add", "ftp", "--url", "ftp://example.com")
    assert "no scanner named" in cli.fails("scanner", "default", "nothing")
    assert "no scanner named" in cli.fails("scanner", "delete", "nothing", "--yes")
    assert admin.post("/scanners", json={"name": "built-in", "url": "http://127.0.0.1:2"}).status_code == 400
    assert (
        admin.post("/scanners", json={"name": "x", "url": "http://127.0.0.1:2", "auth": "token"}).status_code
        == 400
    )
