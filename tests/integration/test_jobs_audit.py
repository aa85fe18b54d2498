"""Job actions reach the audit log, on a real `dockyard serve`: who queued, cancelled or retried a job and
who set or deleted a schedule (through the API), and who ran `dockyard garbage-collect` on the host.
A request the API refuses (not an administrator) changes nothing and records no job event."""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "jobs-audit-admin-password-1")
VIEWER = ("jobs-audit-viewer", "a long enough password 1")
ENV = {"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
CONFIG = {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("jobs-audit"), CONFIG, env=ENV)
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


def events_until(
    api: httpx.Client, found: Callable[[list[dict[str, Any]]], bool], **filters: str
) -> list[dict[str, Any]]:
    """The audit events matching `filters` once `found` holds for them (they are written about once
    a second)."""
    deadline = time.monotonic() + 15
    while True:
        response = api.get("/audit", params={"page_size": "100", **filters})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
        if found(events):
            return events
        assert time.monotonic() < deadline, f"audit events {filters}: {events}"
        time.sleep(0.3)


def selftest_job_count(api: httpx.Client) -> int:
    """Jobs of the one kind the refused requests below name. Not all jobs: the job worker's default
    schedules (the retention sweep, every 5 minutes) queue jobs of their own at any time."""
    answer = api.get("/jobs", params={"kind": "selftest", "page_size": 1})
    assert answer.status_code == 200, answer.text
    return int(answer.headers["X-Total-Count"])


def one(events: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    matching = [event for event in events if all(event.get(k) == v for k, v in fields.items())]
    assert len(matching) == 1, (fields, events)
    return matching[0]


def test_queue_cancel_and_retry_are_audited_with_the_admin_as_actor(api: httpx.Client) -> None:
    queued = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 60}})
    assert queued.status_code == 201, queued.text
    job_id = queued.json()["id"]
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 200
    deadline = time.monotonic() + 30
    while api.get(f"/jobs/{job_id}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    retried = api.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 201, retried.text
    retry_id = retried.json()["id"]
    assert api.post(f"/jobs/{retry_id}/cancel").status_code == 200

    events = events_until(
        api, lambda found: len(found) >= 4, resource_type="job", resource="selftest", actor="admin"
    )

    created = one(
        events, action="create", detail={"kind": "selftest", "params": {"seconds": 60}, "job_id": job_id}
    )
    assert (created["actor_kind"], created["result"], created["resource_name"]) == ("user", "ok", "selftest")
    assert created["client_ip"] == "127.0.0.1"
    cancels = [event for event in events if event["action"] == "cancel"]
    assert {event["detail"]["job_id"] for event in cancels} == {job_id, retry_id}
    assert all(event["detail"]["params"] == {"seconds": 60} for event in cancels)
    retry = one(events, action="retry")
    assert retry["detail"] == {
        "kind": "selftest",
        "retry_of": job_id,
        "job_id": retry_id,
        "params": {"seconds": 60},
    }
    assert retry["result"] == "ok"


def test_a_change_that_fails_is_recorded_as_failed(api: httpx.Client) -> None:
    job_id = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 0}}).json()["id"]
    deadline = time.monotonic() + 30
    while api.get(f"/jobs/{job_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 409  # finished: nothing to cancel

    events = events_until(api, lambda found: bool(found), action="cancel", result="failed", actor="admin")
    failed = one(events, resource_name="selftest")
    assert failed["detail"]["job_id"] == job_id and "error" in failed["detail"]


def test_setting_and_deleting_a_schedule_is_audited(api: httpx.Client) -> None:
    body = {"cron": "@daily", "params": {"seconds": 1}, "enabled": False}
    assert api.put("/jobs/schedules/selftest", json=body).status_code == 200
    assert api.delete("/jobs/schedules/selftest").status_code == 204

    events = events_until(api, lambda found: len(found) >= 2, resource_type="job_schedule", actor="admin")

    updated = one(events, action="update", resource_name="selftest")
    assert updated["detail"] == {"kind": "selftest", **body} and updated["actor_kind"] == "user"
    deleted = one(events, action="delete", resource_name="selftest")
    assert deleted["result"] == "ok"


def test_a_non_admin_is_refused_and_no_job_event_is_recorded(
    server: RunningServer, api: httpx.Client
) -> None:
    assert api.post("/users", json={"username": VIEWER[0], "password": VIEWER[1]}).status_code == 201
    target = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 0}}).json()["id"]
    jobs_before = selftest_job_count(api)
    attempts = (
        ("POST", "/jobs", {"kind": "selftest"}),
        ("POST", f"/jobs/{target}/cancel", None),
        ("POST", f"/jobs/{target}/retry", None),
        ("PUT", "/jobs/schedules/selftest", {"cron": "@daily"}),
        ("DELETE", "/jobs/schedules/purge-uploads", None),
    )
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=VIEWER, timeout=HTTP_TIMEOUT) as viewer:
        for method, path, body in attempts:
            refused = viewer.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)

    # The refusals themselves are recorded (access_denied) by the same process, in the same batch as
    # anything else those requests recorded: once they are all there, nothing else is pending.
    denials = events_until(
        api, lambda found: len(found) >= len(attempts), actor=VIEWER[0], action="access_denied"
    )
    assert {event["detail"]["path"] for event in denials} == {f"/api/v1{path}" for _, path, _ in attempts}
    by_viewer = api.get("/audit", params={"actor": VIEWER[0], "page_size": "100"}).json()
    assert [event for event in by_viewer if event["resource_type"] in ("job", "job_schedule")] == []
    assert selftest_job_count(api) == jobs_before  # nothing was queued either
    assert api.get("/jobs/schedules/selftest").status_code == 404


def test_garbage_collect_on_the_host_is_audited_with_the_local_user(
    server: RunningServer, api: httpx.Client
) -> None:
    ran = run_dockyard(
        "garbage-collect", "--config", server.config_path, "--dry-run", env={**os.environ, **ENV}
    )
    assert ran.returncode == 0, ran.stderr

    events = events_until(api, lambda found: bool(found), resource_type="job", resource="gc", action="create")
    run = one(events, actor=f"cli:{getpass.getuser()}")
    assert run["actor_kind"] == "system" and run["result"] == "ok"
    assert run["detail"]["params"]["dry_run"] is True and run["detail"]["command"] == "garbage-collect"
    job = api.get(f"/jobs/{run['detail']['job_id']}").json()
    assert job["kind"] == "gc" and job["status"] == "succeeded"
