"""A project's retention schedule fired by the sweep of a real `dockyard serve`'s own job worker, on SQLite
and on PostgreSQL: the due schedule fires once, the run deletes what the policy says, and further sweeps
in the same period do not fire it again (docs/retention.md, "On a schedule").

The project's schedule is `@every 10s`, not a five-field cron: the sweep treats both alike (a schedule
is due once its next time after the last firing has come; tests/unit/jobs and tests/unit/retention
cover cron times), and the test need not wait for the next wall-clock minute. Nor for the period: once
the policy is saved, the test moves its last firing a period back in the database, as if the schedule
had fired then, so the next sweep finds it due."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.retention.models import RetentionPolicyRow
from tests.support.ociclient import OCIClient
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "retention-schedule-Passw0rd")
KEEP_LAST_3 = {"rules": [{"action": "latestPushedK", "count": 3}]}
PROJECT_SCHEDULE = "@every 10s"
PERIOD = timedelta(seconds=10)  # the project's: it fires again no sooner than this after firing
FIRING_TIMEOUT = 90.0  # one period, plus a loaded machine's delays
SWEEPS_AFTER_FIRING = 3
PAGE = 100  # the API's largest page


@pytest.fixture
def server(make_server: Callable[..., RunningServer], database_url: str) -> RunningServer:
    return make_server(
        {
            "auth": {"enabled": True},
            # A sweep fired while the last run holds the kind's one place waits for a poll.
            "jobs": {"poll_interval": "200ms", "run_in_serve": True},
            # Servers get the plain postgresql:// form users write in their config.
            "database": {"url": database_url.replace("postgresql+psycopg://", "postgresql://", 1)},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield http


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield OCIClient(http)


def push_versions(oci: OCIClient, repo: str) -> None:
    """v1..v5, oldest first, each a different image; "latest" on v5."""
    for n in range(1, 6):
        pushed = oci.push_image(repo, f"v{n}", seed=f"{repo} v{n}")
        time.sleep(0.01)  # distinct push times, whatever the clock's resolution
    oci.push_manifest(repo, "latest", pushed.body, pushed.media_type)


def retention_jobs(api: httpx.Client) -> list[dict[str, Any]]:
    """Every retention job (sweeps and runs), oldest first."""
    jobs: list[dict[str, Any]] = []
    for page in range(1, 1000):
        params: dict[str, str | int] = {"kind": "retention", "page_size": PAGE, "page": page, "sort": "id"}
        response = api.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        jobs += response.json()
        if len(response.json()) < PAGE:
            return jobs
    raise AssertionError("too many retention jobs")


def sweeps(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep jobs among retention jobs: those without a project."""
    return [job for job in jobs if "project" not in job["params"]]


def back_date_schedules(database_url: str, by: timedelta) -> None:
    """Move the last firing of every policy's schedule (saving the policy sets it to then) `by` back."""
    database = Database(build_engine(database_url))
    policies = RetentionPolicyRow
    try:
        with database.write() as connection:
            rows = connection.execute(
                select(policies.project_id, policies.scheduled_at).where(policies.schedule.is_not(None))
            ).all()
            for owner, last in rows:
                connection.execute(
                    update(policies).where(policies.project_id == owner).values(scheduled_at=last - by)
                )
    finally:
        database.dispose()


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.db_independent  # SQLite and PostgreSQL through the `database_url` parameter
def test_the_sweep_fires_a_due_project_schedule_once(
    api: httpx.Client, oci: OCIClient, database_url: str
) -> None:
    push_versions(oci, "nightly/app")
    push_versions(oci, "byhand/app")
    # The retention kind's own schedule is the sweep, every 5 minutes unless an operator changes it.
    # (made by the job worker when it starts, after the HTTP workers answer)
    deadline = time.monotonic() + 60
    while (default := api.get("/jobs/schedules/retention")).status_code == 404:
        assert time.monotonic() < deadline, default.text
        time.sleep(0.2)
    assert default.json()["cron"] == "*/5 * * * *"
    policy = api.put("/projects/nightly/retention", json={**KEEP_LAST_3, "schedule": PROJECT_SCHEDULE})
    assert policy.status_code == 200, policy.text
    assert api.put("/projects/byhand/retention", json=KEEP_LAST_3).status_code == 200  # no schedule
    back_date_schedules(database_url, PERIOD)  # due now, not a period after it was saved
    # Sweep every second, so the project's next time is seen at once and swept several times after.
    sweep = api.put("/jobs/schedules/retention", json={"cron": "@every 1s"})
    assert sweep.status_code == 200, sweep.text

    deadline = time.monotonic() + FIRING_TIMEOUT
    while True:
        jobs = retention_jobs(api)
        runs = [job for job in jobs if job["params"].get("project") == "nightly"]
        assert not runs or runs[0]["status"] != "failed", runs[0]
        fired = runs[0] if runs and runs[0]["status"] == "succeeded" else None
        sweeps_after = [
            job for job in sweeps(jobs) if fired and job["id"] > fired["id"] and job["status"] == "succeeded"
        ]
        if len(sweeps_after) >= SWEEPS_AFTER_FIRING:
            break
        assert time.monotonic() < deadline, f"no scheduled run, or no sweeps after it: {jobs}"
        time.sleep(0.5)
    stopped = api.put("/jobs/schedules/retention", json={"cron": "*/5 * * * *", "enabled": False})
    assert stopped.status_code == 200, stopped.text

    assert fired is not None
    assert fired["params"] == {"project": "nightly", "dry_run": False, "scheduled": True}
    assert (fired["result"]["deleted"], fired["result"]["dry_run"]) == (2, False)
    jobs = retention_jobs(api)
    finished = [job for job in sweeps(jobs) if job["status"] in ("succeeded", "failed")]
    assert all(job["status"] == "succeeded" for job in finished), finished
    first_firing = next(job for job in finished if job["result"]["queued"])
    assert first_firing["result"]["queued"] == {"nightly": fired["id"]}
    # The period the run was fired in: the sweep read its clock after it started and moved the policy's
    # last firing there, so the schedule is not due again before this. A sweep that finished before it
    # read its clock before it too; a run queued after it may be the next period's.
    period_end = moment(first_firing["started_at"]) + PERIOD
    in_period = [job for job in finished if moment(job["finished_at"]) < period_end]
    assert [job["id"] for job in in_period if job["result"]["queued"]] == [first_firing["id"]]  # fired once
    later = [job for job in in_period if job["id"] > first_firing["id"]]
    assert len(later) >= SWEEPS_AFTER_FIRING, "the sweeps after the firing fell in the next period: a stall?"
    runs = [job for job in jobs if job["params"].get("project") == "nightly"]
    assert [job["id"] for job in runs if moment(job["created_at"]) < period_end] == [fired["id"]]
    assert all(job["params"].get("project") != "byhand" for job in jobs)  # no schedule: by hand only

    assert oci.tags("nightly/app") == ["latest", "v3", "v4", "v5"]
    assert oci.tags("byhand/app") == ["latest", "v1", "v2", "v3", "v4", "v5"]
    [run] = api.get("/projects/nightly/retention/runs").json()
    assert (run["job_id"], run["dry_run"], run["status"]) == (fired["id"], False, "succeeded")
    report = api.get(f"/projects/nightly/retention/runs/{run['id']}").json()["report"]
    outcomes = {d["tag"]: d["outcome"] for r in report["repositories"] for d in r["decisions"]}
    assert outcomes == {
        "v1": "deleted",
        "v2": "deleted",
        "v3": "kept",
        "v4": "kept",
        "v5": "kept",
        "latest": "kept",
    }
