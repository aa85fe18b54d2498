"""Tag retention against a real `dockyard serve` (auth on: the management API needs it), whose own job
worker runs the retention jobs: "keep the last 3", a dry run that changes nothing, a run that deletes
exactly what the dry run listed, and the kept images still pull."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.ociclient import OCIClient, PushedManifest
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "retention-Passw0rd")
DEVELOPER = ("dev", "retention-dev-Passw0rd")
KEEP_LAST_3 = {"rules": [{"action": "latestPushedK", "count": 3, "repositories": {"match": "**"}}]}
RUN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("retention"),
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield http


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield OCIClient(http)


def push_versions(oci: OCIClient, repo: str, count: int) -> dict[str, PushedManifest]:
    """v1..v{count}, oldest first, each a different image; "latest" on the newest."""
    pushed = {}
    for n in range(1, count + 1):
        pushed[f"v{n}"] = oci.push_image(repo, f"v{n}", seed=f"{repo} v{n}")
        time.sleep(0.01)  # distinct push times, whatever the clock's resolution
    oci.push_manifest(repo, "latest", pushed[f"v{count}"].body, pushed[f"v{count}"].media_type)
    return pushed


def run(api: httpx.Client, project: str, dry_run: bool) -> dict[str, Any]:
    """Queue a run, wait for the worker to finish it, return the run with its report."""
    queued = api.post(f"/projects/{project}/retention/run", json={"dry_run": dry_run})
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        runs = api.get(f"/projects/{project}/retention/runs").json()
        done = [r for r in runs if r["job_id"] == job_id and r["status"] != "running"]
        if done:
            found = api.get(f"/projects/{project}/retention/runs/{done[0]['id']}")
            assert found.status_code == 200, found.text
            result: dict[str, Any] = found.json()
            assert result["status"] == "succeeded", result
            return result
        time.sleep(0.2)
    job = api.get(f"/jobs/{job_id}").text
    raise AssertionError(f"retention job {job_id} did not finish in {RUN_TIMEOUT}s: {job}")


def decisions(run: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """(repository, tag) -> (outcome, reason)"""
    return {
        (repository["repository"], decision["tag"]): (decision["outcome"], decision["reason"])
        for repository in run["report"]["repositories"]
        for decision in repository["decisions"]
    }


def test_keep_the_last_3_dry_run_then_run(api: httpx.Client, oci: OCIClient) -> None:
    app = push_versions(oci, "shop/app", 5)
    push_versions(oci, "shop/tools/ci", 4)
    push_versions(oci, "elsewhere/app", 5)  # another project: no policy, untouched
    assert api.put("/projects/shop/retention", json=KEEP_LAST_3).status_code == 200
    assert api.get("/projects/shop/retention").json()["rules"][0]["count"] == 3

    dry = run(api, "shop", dry_run=True)
    expected_deleted = {("shop/app", "v1"), ("shop/app", "v2"), ("shop/tools/ci", "v1")}
    outcome = decisions(dry)
    assert {key for key, (what, _) in outcome.items() if what == "deleted"} == expected_deleted
    assert outcome[("shop/app", "v5")] == ("kept", "rule 1 (latestPushedK 3)")
    assert outcome[("shop/app", "latest")] == ("kept", "rule 1 (latestPushedK 3)")
    assert dry["summary"]["deleted"] == 3
    assert oci.tags("shop/app") == ["latest", "v1", "v2", "v3", "v4", "v5"]  # nothing changed
    assert oci.tags("shop/tools/ci") == ["latest", "v1", "v2", "v3", "v4"]

    real = run(api, "shop", dry_run=False)
    assert decisions(real) == outcome  # deleted exactly what the dry run listed
    assert oci.tags("shop/app") == ["latest", "v3", "v4", "v5"]
    assert oci.tags("shop/tools/ci") == ["latest", "v2", "v3", "v4"]
    assert oci.tags("elsewhere/app") == ["latest", "v1", "v2", "v3", "v4", "v5"]
    for tag in ("v3", "v4", "v5", "latest"):  # kept images still pull, blobs and all
        manifest = oci.get_manifest("shop/app", tag)
        assert manifest.status_code == 200
        layer = json.loads(manifest.content)["layers"][0]["digest"]
        assert oci.http.get(f"/v2/shop/app/blobs/{layer}").status_code == 200
    for tag in ("v1", "v2"):
        assert oci.get_manifest("shop/app", tag).status_code == 404
    # Tags go, manifests stay (until garbage collection): still there by digest.
    assert oci.get_manifest("shop/app", app["v1"].digest).status_code == 200
    # Each deleted tag is in the audit log, done by the system actor "retention".
    expected = {"shop/app:v1", "shop/app:v2", "shop/tools/ci:v1"}
    deadline = time.monotonic() + 30  # the job worker's audit writer flushes every few seconds
    while True:
        events = api.get("/audit", params={"actor": "retention", "resource": "shop/"}).json()
        if {e["resource_name"] for e in events} == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {(e["action"], e["actor_kind"], e["resource_name"]) for e in events} == {
        ("delete", "system", name) for name in expected
    }


def test_bad_policies_are_400_with_a_clear_message(api: httpx.Client, oci: OCIClient) -> None:
    oci.push_image("badpolicy/app", "v1")
    cases = [
        ({"rules": [{"action": "keepSome"}]}, "rules.0.action"),
        ({"rules": [{"action": "latestPushedK"}]}, "latestPushedK needs `count`"),
        ({"rules": [{"action": "always", "tags": {"match": "v[1"}}]}, "unclosed '['"),
        ({"rules": [{"action": "always", "repositories": {"exclude": "{a,b"}}]}, "unclosed '{'"),
        ({"rules": [{"action": "always"}], "schedule": "at noon"}, "schedule"),
        ({"rules": [{"action": "always"}] * 16}, "at most 15"),
    ]
    for body, says in cases:
        response = api.put("/projects/badpolicy/retention", json=body)
        assert response.status_code == 400, (body, response.text)
        [error] = response.json()["errors"]
        assert error["code"] == "BAD_REQUEST"
        assert says in error["message"], (body, error)
    nothing_stored = api.get("/projects/badpolicy/retention")
    assert nothing_stored.status_code == 404
    assert nothing_stored.json() == {
        "errors": [{"code": "NOT_FOUND", "message": "project 'badpolicy' has no retention policy"}]
    }
    assert api.put("/projects/nosuchproject/retention", json=KEEP_LAST_3).status_code == 404


def test_only_project_admins_change_the_policy_or_run_it(
    api: httpx.Client, oci: OCIClient, server: RunningServer
) -> None:
    oci.push_image("guarded/app", "v1")
    assert api.post("/users", json={"username": DEVELOPER[0], "password": DEVELOPER[1]}).status_code == 201
    member = api.post("/projects/guarded/members", json={"user": DEVELOPER[0], "role": "developer"})
    assert member.status_code == 201, member.text
    assert api.put("/projects/guarded/retention", json=KEEP_LAST_3).status_code == 200
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=DEVELOPER, timeout=HTTP_TIMEOUT) as developer:
        assert developer.get("/projects/guarded/retention").status_code == 200  # members may read it
        assert developer.put("/projects/guarded/retention", json={"rules": []}).status_code == 403
        assert developer.delete("/projects/guarded/retention").status_code == 403
        assert developer.post("/projects/guarded/retention/run", json={"dry_run": True}).status_code == 403
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=HTTP_TIMEOUT) as anonymous:
        assert anonymous.get("/projects/guarded/retention").status_code == 401
    assert api.delete("/projects/guarded/retention").status_code == 204
    assert api.get("/projects/guarded/retention").status_code == 404
    deleted_twice = api.delete("/projects/guarded/retention")
    assert deleted_twice.status_code == 404
    assert deleted_twice.json()["errors"][0]["message"] == "project 'guarded' has no retention policy"


@pytest.mark.db_independent  # HTTP only: the API tests here run these routes on PostgreSQL
def test_the_cli_sets_shows_and_runs_a_policy(server: RunningServer, oci: OCIClient, tmp_path: Path) -> None:
    push_versions(oci, "clishop/app", 4)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "DOCKYARD_SERVER")}
    env.update(HOME=str(tmp_path), COLUMNS="200")

    def dockyard(*args: str, stdin: str | None = None) -> str:
        result = run_dockyard(*args, input=stdin, env=env)
        assert result.returncode == 0, f"dockyard {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    dockyard("login", server.url, "-u", ADMIN[0], "--password-stdin", stdin=ADMIN[1] + "\n")
    policy = tmp_path / "keep-last-3.yaml"
    policy.write_text("rules:\n  - action: latestPushedK\n    count: 3\n    repositories: {match: '**'}\n")
    dockyard("retention", "set", "clishop", str(policy))
    assert json.loads(dockyard("retention", "show", "clishop", "--json"))["rules"][0]["count"] == 3
    dry = json.loads(dockyard("retention", "run", "clishop", "--dry-run", "--wait", "--json"))
    assert dry["summary"]["deleted"] == 1
    # The dry run's table, as a user reads it before enabling: each tag, then each repository's counts.
    lines = dockyard("retention", "run", "clishop", "--dry-run", "--wait").splitlines()
    assert any(line.split()[:2] == ["clishop/app", "v1"] and "would delete" in line for line in lines), lines
    assert any(line.split()[:2] == ["clishop/app", "v4"] and " kept " in line for line in lines), lines
    assert "Would delete" in "\n".join(lines)
    assert any(line.split() == ["clishop/app", "4", "1", "0", "0"] for line in lines), lines
    assert oci.tags("clishop/app") == ["latest", "v1", "v2", "v3", "v4"]
    table = dockyard("retention", "run", "clishop", "--wait")
    assert "v1" in table and "not retained by any rule" in table
    assert oci.tags("clishop/app") == ["latest", "v2", "v3", "v4"]
    assert "run" in dockyard("retention", "runs", "clishop")
