"""GET /api/v1/vulndb on a running server, after `dockyard vulndb import` into its database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "vulndb-Passw0rd-1")
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "vulndb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("vulndb"),
        {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


def test_the_status_follows_imports(server: RunningServer) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as admin:
        empty = admin.get("/vulndb")
        assert empty.status_code == 200, empty.text
        assert empty.json()["version"] == 0 and empty.json()["last_import"] is None
        done = run_dockyard("vulndb", "import", FIXTURES, "--config", server.config_path)
        assert done.returncode == 0, done.stderr
        status = admin.get("/vulndb").json()
        assert status["version"] == status["last_change"]["id"] == 1
        assert status["advisories"] == 9 and status["affected"] == 12
        assert status["by_ecosystem"]["pypi"] == 4 and status["by_ecosystem"]["alpine:v3.18"] == 1
        assert status["last_import"]["source"] == str(FIXTURES)
    anonymous = httpx.get(f"{server.url}/api/v1/vulndb", timeout=HTTP_TIMEOUT)
    assert anonymous.status_code == 401


def test_the_allowlist_through_the_api(server: RunningServer) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as admin:
        assert admin.post("/projects", json={"name": "allow"}).status_code == 201
        put = admin.put("/vulndb/allowlist/CVE-2020-28493", json={"reason": "not reachable"})
        assert put.status_code == 200, put.text
        assert put.json()["created_by"] == "admin" and put.json()["project"] is None
        until = "2999-01-01T00:00:00Z"
        scoped = admin.put("/projects/allow/vulndb/allowlist/GHSA-35jh-r3h4-6jhm", json={"expires_at": until})
        assert scoped.status_code == 200, scoped.text
        assert [e["vuln_id"] for e in admin.get("/vulndb/allowlist").json()] == ["CVE-2020-28493"]
        listed = admin.get("/projects/allow/vulndb/allowlist").json()
        assert [(e["vuln_id"], e["project"], e["expires_at"][:4]) for e in listed] == [
            ("GHSA-35jh-r3h4-6jhm", "allow", "2999")
        ]
        past = admin.put("/vulndb/allowlist/CVE-1", json={"expires_at": "2000-01-01T00:00:00Z"})
        assert past.status_code == 400 and "in the past" in past.text
        assert admin.put("/vulndb/allowlist/CVE%202020", json={}).status_code == 400
        naive = admin.put("/vulndb/allowlist/CVE-2", json={"expires_at": "2999-01-01T00:00:00"})
        assert naive.status_code == 200 and naive.json()["expires_at"].startswith("2999-01-01T00:00:00")
        assert admin.put("/projects/nope/vulndb/allowlist/CVE-1", json={}).status_code == 404
        assert admin.delete("/vulndb/allowlist/CVE-2020-28493").status_code == 204
        gone = admin.delete("/vulndb/allowlist/CVE-2020-28493")
        assert gone.status_code == 404 and "not allowlisted" in gone.text
        wanted = {
            ("update", "CVE-2020-28493", "ok"),
            ("delete", "CVE-2020-28493", "ok"),
            ("delete", "CVE-2020-28493", "failed"),
        }
        deadline = time.monotonic() + 15  # the log is written in batches, about every second
        while True:
            events = admin.get("/audit", params={"resource_type": "vulndb_allowlist"}).json()
            if {(e["action"], e["resource_name"], e["result"]) for e in events} >= wanted:
                break
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
