"""A standalone `dockyard worker --metrics-listen` serves its job metrics over plain HTTP, with the names
serve's /metrics uses: attempts started and finished by kind and outcome, their durations, the queue's
depth by kind and status (read from the database at each scrape) and the runner's heartbeat."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import run_dockyard
from tests.support.server import DOCKYARD, RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "worker-metrics-admin-password-1")
ENV = {"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
# No job worker in serve: the standalone worker below runs every job, one at a time.
CONFIG = {
    "auth": {"enabled": True},
    "jobs": {"run_in_serve": False, "threads": 1, "poll_interval": "200ms"},
}


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("worker-metrics"), CONFIG, env=ENV)
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture
def worker_metrics(server: RunningServer) -> Iterator[str]:
    """The /metrics URL of a `dockyard worker` started with --metrics-listen."""
    listen = f"127.0.0.1:{free_port()}"
    log = (server.datadir.parent / "worker.log").open("ab")
    # The binary: a worker runs until stopped, serving its metrics from its own process.
    worker = subprocess.Popen(
        [DOCKYARD, "worker", "--config", str(server.config_path), "--metrics-listen", listen],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV},
        start_new_session=True,
    )
    url = f"http://{listen}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, (server.datadir.parent / "worker.log").read_text()
            try:
                if httpx.get(url, timeout=HTTP_TIMEOUT).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the worker's metrics endpoint never answered"
            time.sleep(0.2)
        yield url
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()


def scrape(
    url: str, auth: tuple[str, str] | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by name and labels."""
    response = httpx.get(url, auth=auth, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def depth(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], status: str) -> float:
    return value(samples, "jobs_queue_depth", kind="selftest", status=status)


def wait_for(api: httpx.Client, job_id: int, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while not done(job := api.get(f"/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def test_a_standalone_worker_serves_its_job_metrics(
    server: RunningServer, api: httpx.Client, worker_metrics: str
) -> None:
    began = time.time()
    idle = scrape(worker_metrics)
    # Every kind the worker knows is listed before its first job, at 0.
    assert depth(idle, "queued") == 0 and depth(idle, "running") == 0
    assert value(idle, "jobs_queue_depth", kind="gc", status="queued") == 0

    long_job = api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 60}}).json()["id"]
    wait_for(api, long_job, lambda job: job["status"] == "running")
    # One thread: these two wait in the queue behind the running one.
    waiting = [
        api.post("/jobs", json={"kind": "selftest", "params": {"seconds": 0}}).json()["id"] for _ in range(2)
    ]
    busy = scrape(worker_metrics)
    assert (depth(busy, "queued"), depth(busy, "running")) == (2, 1)
    assert value(busy, "jobs_running", kind="selftest") == 1
    assert value(busy, "jobs_started_total", kind="selftest") == 1
    # serve's /metrics reads the same gauge from the same database.
    on_serve = scrape(f"{server.url}/metrics", auth=ADMIN)
    assert (depth(on_serve, "queued"), depth(on_serve, "running")) == (2, 1)

    assert api.post(f"/jobs/{long_job}/cancel").status_code == 200
    for job_id in (long_job, *waiting):
        wait_for(api, job_id, finished)

    done = scrape(worker_metrics)
    assert depth(done, "queued") == 0 and depth(done, "running") == 0
    assert value(done, "jobs_started_total", kind="selftest") == 3
    assert value(done, "jobs_finished_total", kind="selftest", status="succeeded") == 2
    assert value(done, "jobs_finished_total", kind="selftest", status="cancelled") == 1
    assert value(done, "job_duration_seconds_count", kind="selftest") == 3
    assert value(done, "jobs_running", kind="selftest") == 0
    assert value(done, "jobs_last_claim_timestamp_seconds") >= began
    assert value(done, "jobs_worker_heartbeat_timestamp_seconds") >= began
    assert value(done, "process_resident_memory_bytes") > 0  # one process: its own CPU and memory


def test_the_worker_serves_the_metrics_of_the_collections_it_ran(
    api: httpx.Client, worker_metrics: str
) -> None:
    gc = api.post("/jobs", json={"kind": "gc", "params": {"dry_run": True}}).json()["id"]
    assert wait_for(api, gc, finished)["status"] == "succeeded"

    samples = scrape(worker_metrics)
    assert value(samples, "jobs_finished_total", kind="gc", status="succeeded") == 1
    assert value(samples, "gc_runs_total", dry_run="true") == 1


def test_a_bad_listen_address_is_refused_before_the_worker_starts() -> None:
    refused = run_dockyard("worker", "--metrics-listen", "localhost", env={**os.environ, **ENV})
    assert refused.returncode == 2 and "host:port" in refused.stderr, refused.stderr
