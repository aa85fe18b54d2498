"""A job queued over HTTP starts at once on a running `dockyard serve`, however long `jobs.poll_interval`:
the HTTP worker that queued it tells the job runner (another process) through the node's change feed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN_PASSWORD = "wakeup-admin-password-1"
# The runner's own rounds come every 20 s here (a third of the default 60 s lease): a job that finishes
# within STARTED_WITHIN did not wait for one.
CONFIG: dict[str, Any] = {
    "auth": {"enabled": True},
    "http": {"workers": 2},
    "jobs": {"run_in_serve": True, "poll_interval": "30s"},
}
STARTED_WITHIN = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("wakeup"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/api/v1", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT
    ) as client:
        yield client


def run_selftest(api: httpx.Client, seconds: float) -> tuple[dict[str, Any], float]:
    """Queue a selftest job and wait for it to finish; the job and how long that took."""
    queued = time.monotonic()
    created = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 0}})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    deadline = queued + seconds
    while (job := api.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return job, time.monotonic() - queued


def test_a_job_queued_over_http_runs_at_once_not_at_the_runners_next_poll(api: httpx.Client) -> None:
    # The job runner starts after the HTTP workers; its first round runs whatever is queued by then.
    first, _ = run_selftest(api, 90)
    assert first["status"] == "succeeded", first
    for _ in range(3):  # one job could meet a round by luck; three in a row do not
        time.sleep(0.5)  # the runner is back waiting for its next round
        job, took = run_selftest(api, STARTED_WITHIN)
        assert job["status"] == "succeeded", f"still {job['status']} after {took:.1f}s: {job}"


def test_a_job_queued_by_a_command_on_the_host_runs_at_once(server: RunningServer, api: httpx.Client) -> None:
    """`dockyard vulndb allow` queues the job that applies the allowlist to stored scans, in a process
    of its own: it tells the node's job worker too."""
    run_selftest(api, 90)  # the job runner is up and waiting
    time.sleep(0.5)
    allowed = run_dockyard("vulndb", "allow", "CVE-2099-4242", "--config", server.config_path)
    assert allowed.returncode == 0, allowed.stderr
    queued = time.monotonic()
    while True:
        (job,) = api.get("/jobs", params={"kind": "scan", "page_size": 1}).json()
        if job["status"] not in ("queued", "running"):
            break
        assert time.monotonic() - queued < STARTED_WITHIN, f"still {job['status']}: {job}"
        time.sleep(0.05)
    assert job["status"] == "succeeded" and job["params"] == {"recount": "*"}, job
