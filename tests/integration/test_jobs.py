"""Background jobs on a real `dockyard serve` (its job worker runs beside the HTTP workers) and on
separate `dockyard worker` processes: triggered, listed, shown, cancelled and retried through the API and
the CLI; a worker SIGKILLed in the middle of a job has that job finished by another, once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.server import DOCKYARD, RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN_PASSWORD = "jobs-admin-password-1"
# Short leases and polls so a dead worker's job is taken back within seconds, not a minute.
JOBS = {"lease": "2s", "poll_interval": "200ms", "run_in_serve": True}
CONFIG: dict[str, Any] = {"auth": {"enabled": True}, "jobs": JOBS}
ENV = {"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("jobs-server"), CONFIG, env=ENV)
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/api/v1", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT
    ) as client:
        yield client


def wait_for(
    api: httpx.Client, job_id: int, done: Callable[[dict[str, Any]], bool], seconds: float = 30
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
        time.sleep(0.1)


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def test_purge_uploads_runs_as_a_job_and_drops_stale_uploads(
    server: RunningServer, api: httpx.Client
) -> None:
    upload = httpx.post(
        f"{server.url}/v2/jobs/purge/blobs/uploads/", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT
    )
    assert upload.status_code == 202, upload.text
    location = upload.headers["Location"]

    created = api.post("/jobs", json={"kind": "purge-uploads", "params": {"age": "0s"}})
    assert created.status_code == 201, created.text
    job = wait_for(api, created.json()["id"], finished)

    assert job["status"] == "succeeded", job
    assert job["result"]["purged"] >= 1
    assert any("purged" in entry["line"] for entry in job["logs"])
    gone = httpx.get(
        server.url + location if location.startswith("/") else location,
        auth=("admin", ADMIN_PASSWORD),
        timeout=HTTP_TIMEOUT,
    )
    assert gone.status_code == 404
    # The job worker's metrics add up with the HTTP workers' on /metrics.
    metrics = httpx.get(f"{server.url}/metrics", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT).text
    assert 'jobs_finished_total{kind="purge-uploads",status="succeeded"}' in metrics
    assert 'job_duration_seconds_count{kind="purge-uploads"}' in metrics


def test_the_default_schedule_and_kinds_are_there(api: httpx.Client) -> None:
    assert {"purge-uploads", "selftest"} <= set(api.get("/jobs/kinds").json())
    # storage.maintenance.uploadpurging; the job worker makes it when it starts (after the HTTP workers).
    deadline = time.monotonic() + 60
    while (answer := api.get("/jobs/schedules/purge-uploads")).status_code == 404:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    schedule = answer.json()
    assert schedule["cron"] == "@every 6h" and schedule["enabled"] is True


def test_bad_requests_get_clear_errors(server: RunningServer, api: httpx.Client) -> None:
    unknown = api.post("/jobs", json={"kind": "defragment"})
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "BAD_REQUEST"
    assert "unknown job kind 'defragment'" in unknown.json()["errors"][0]["message"]
    bad_cron = api.put("/jobs/schedules/selftest", json={"cron": "61 * * * *"})
    assert bad_cron.status_code == 400 and "minute" in bad_cron.json()["errors"][0]["message"]
    missing = api.get("/jobs/999999")
    assert missing.status_code == 404
    assert missing.json() == {"errors": [{"code": "NOT_FOUND", "message": "job 999999 not found"}]}
    assert api.get("/jobs", params={"status": "exploded"}).status_code == 400
    assert httpx.get(f"{server.url}/api/v1/jobs", timeout=HTTP_TIMEOUT).status_code == 401
    user = ("jobs-viewer", "a long enough password 1")
    assert api.post("/users", json={"username": user[0], "password": user[1]}).status_code == 201
    for method, path in (("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/schedules")):
        refused = httpx.request(
            method, f"{server.url}/api/v1{path}", auth=user, json={"kind": "selftest"}, timeout=HTTP_TIMEOUT
        )
        assert refused.status_code == 403, (method, path, refused.text)


def test_cancel_stops_a_running_job_and_retry_queues_it_again(api: httpx.Client) -> None:
    job_id = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 60}}).json()["id"]
    wait_for(api, job_id, lambda job: job["status"] == "running" and job["progress_done"] >= 1)

    asked = time.monotonic()
    assert api.post(f"/jobs/{job_id}/cancel").json()["cancel_requested"] is True
    job = wait_for(api, job_id, finished, seconds=10)
    assert job["status"] == "cancelled" and time.monotonic() - asked < 5
    again = api.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json() == {
        "errors": [{"code": "CONFLICT", "message": f"job {job_id} has already been cancelled"}]
    }

    retried = api.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 201 and retried.json()["retry_of"] == job_id
    api.post(f"/jobs/{retried.json()['id']}/cancel")  # queued: cancelled at once; running: soon
    wait_for(api, retried.json()["id"], finished, seconds=10)
    listed = api.get("/jobs", params={"kind": "selftest", "status": "cancelled", "page_size": 100})
    assert {job_id, retried.json()["id"]} <= {job["id"] for job in listed.json()}
    assert int(listed.headers["X-Total-Count"]) >= 2


def test_schedules_through_the_api(api: httpx.Client) -> None:
    put = api.put("/jobs/schedules/selftest", json={"cron": "@daily", "params": {"seconds": 0}})
    assert put.status_code == 200, put.text
    assert put.json()["next_run_at"].endswith(("T00:00:00Z", "T00:00:00+00:00"))
    assert [s["kind"] for s in api.get("/jobs/schedules").json()].count("selftest") == 1
    assert api.delete("/jobs/schedules/selftest").status_code == 204
    assert api.get("/jobs/schedules/selftest").status_code == 404


@pytest.mark.db_independent  # HTTP only: the API tests here run these routes on PostgreSQL
def test_the_cli_runs_lists_and_shows_jobs(server: RunningServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "DOCKYARD_SERVER")}
    env.update(HOME=str(tmp_path), COLUMNS="200")

    def dockyard(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_dockyard(*args, input=stdin, env=env)

    login = dockyard("login", server.url, "-u", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    assert login.returncode == 0, login.stderr
    ran = dockyard("job", "run", "selftest", "-p", "seconds=1", "--wait")
    assert ran.returncode == 0, ran.stderr
    assert "Status:" in ran.stdout and "succeeded" in ran.stdout and "waiting 1s" in ran.stderr
    listed = dockyard("job", "list", "--kind", "selftest")
    assert listed.returncode == 0 and "succeeded" in listed.stdout
    failed = dockyard("job", "run", "nope")
    assert failed.returncode == 1 and "unknown job kind 'nope'" in failed.stderr
    scheduled = dockyard("job", "schedule", "selftest", "*/5 * * * *", "-p", "seconds=0")
    assert scheduled.returncode == 0 and "next run" in scheduled.stdout, scheduled.stderr
    assert dockyard("job", "unschedule", "selftest").returncode == 0


def job_worker_children(server: RunningServer) -> list[int]:
    """The pids of serve's job runner children, by the name they take (the first is forked from serve,
    with its command line; one started again is `python -c ... worker`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            name = (entry / "comm").read_text().strip()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server.process.pid and name == "dockyard-jobs":
            found.append(int(entry.name))
    return found


def test_serve_starts_its_job_worker_again_when_it_dies(server: RunningServer, api: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while len(children := job_worker_children(server)) != 1:
        assert time.monotonic() < deadline, children
        time.sleep(0.2)
    os.kill(children[0], signal.SIGKILL)

    job_id = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 0}}).json()["id"]
    job = wait_for(api, job_id, finished, seconds=90)
    assert job["status"] == "succeeded"
    replacement = job_worker_children(server)
    assert len(replacement) == 1 and replacement != children
    assert "the job worker exited with -9; starting another" in server.log()


def start_worker(server: RunningServer, node: str) -> subprocess.Popen[bytes]:
    log = (server.datadir.parent / f"worker-{node}.log").open("ab")
    # The binary: the test kills this worker process mid-job.
    return subprocess.Popen(
        [DOCKYARD, "worker", "--config", str(server.config_path), "--node", node],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV},
        start_new_session=True,
    )


def test_a_killed_workers_job_is_finished_by_another_worker_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = {**CONFIG, "jobs": {**JOBS, "run_in_serve": False}}  # only the two workers below run jobs
    server = start_server(tmp_path_factory.mktemp("jobs-ha"), config, env=ENV)
    workers = {node: start_worker(server, node) for node in ("node-a", "node-b")}
    try:
        with httpx.Client(
            base_url=f"{server.url}/api/v1", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT
        ) as api:
            job_id = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 6}}).json()["id"]
            job = wait_for(api, job_id, lambda job: job["status"] == "running" and job["progress_done"] >= 1)
            first = next(node for node in workers if any(node in entry["line"] for entry in job["logs"]))
            second = next(node for node in workers if node != first)
            workers[first].send_signal(signal.SIGKILL)
            workers[first].wait(10)
            job = wait_for(api, job_id, finished, seconds=60)
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.terminate()
                worker.wait(30)
        server.stop()

    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    lines = [entry["line"] for entry in job["logs"]]
    assert sum(f"attempt 1 of 3 on {first}" in line for line in lines) == 1
    assert sum("stopped renewing its lease; queued again" in line for line in lines) == 1
    assert sum(f"attempt 2 of 3 on {second}" in line for line in lines) == 1
    assert lines.count("done") == 1  # the handler finished once
