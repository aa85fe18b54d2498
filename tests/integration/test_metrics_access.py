"""Who may read /metrics, which names every project (private ones too) and its storage use.

On http.addr: system administrators and the metrics token by default; anyone with `metrics.public` or
with auth off. `metrics.listen` moves the endpoint to a port of its own (without auth), served by every
HTTP worker with the same, summed values. Access rules through the whole app in-process; the listener
through a real `dockyard serve` with two workers.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.inprocess import ADMIN, TestClient, basic, in_process_client
from tests.support.ociclient import OCIClient, describe
from tests.support.server import RunningServer, free_port
from tests.support.timeouts import HTTP_TIMEOUT

PRIVATE = "secret-team"
TOKEN = "metrics-scrape-token-0123456789abcdef"
QUOTA_LINE = f'dockyard_project_quota_used_bytes{{project="{PRIVATE}"}}'


@contextlib.contextmanager
def registry(workdir: Path, config: dict[str, Any] | None = None) -> Iterator[TestClient]:
    """The app with a private project holding an image, and a user who is not an administrator."""
    with in_process_client(workdir, config) as http:
        if config is None or config.get("auth", {}).get("enabled", True):
            assert http.post("/api/v1/projects", json={"name": PRIVATE}, auth=ADMIN).status_code == 201
            created = http.post(
                "/api/v1/users", json={"username": "dev", "password": "Dev-user-passw0rd-9"}, auth=ADMIN
            )
            assert created.status_code == 201, describe(created)
            http.auth = ADMIN
        OCIClient(http).push_image(f"{PRIVATE}/app", "v1")
        http.auth = None  # type: ignore[assignment]
        yield http


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    with registry(tmp_path, {"metrics": {"token": TOKEN}}) as http:
        yield http


def test_anonymous_scrape_is_refused_and_names_no_project(guarded: TestClient) -> None:
    refused = guarded.get("/metrics")
    assert refused.status_code == 401, describe(refused)
    assert PRIVATE not in refused.text
    assert refused.headers["www-authenticate"].startswith("Basic ")


def test_an_administrator_reads_the_metrics(guarded: TestClient) -> None:
    answer = guarded.get("/metrics", auth=ADMIN)
    assert answer.status_code == 200, describe(answer)
    assert answer.headers["content-type"].startswith("text/plain")
    assert QUOTA_LINE in answer.text


def test_a_user_who_is_not_an_administrator_is_refused(guarded: TestClient) -> None:
    refused = guarded.get("/metrics", auth=("dev", "Dev-user-passw0rd-9"))
    assert refused.status_code == 401 and PRIVATE not in refused.text


def test_the_metrics_token_reads_them_and_a_wrong_one_does_not(guarded: TestClient) -> None:
    answer = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and QUOTA_LINE in answer.text
    for wrong in (TOKEN[:-1], TOKEN + "x", "", "é" * 40):
        refused = guarded.get("/metrics", headers={"Authorization": b"Bearer " + wrong.encode()})
        assert refused.status_code == 401, wrong
    # Nor is the token a password: Basic with it, for any user, is refused.
    as_basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()}
    assert guarded.get("/metrics", headers=as_basic).status_code == 401


def test_without_a_token_only_administrators_read_them(tmp_path: Path) -> None:
    with registry(tmp_path) as http:
        assert http.get("/metrics", headers={"Authorization": "Bearer anything-at-all"}).status_code == 401
        assert http.get("/metrics", headers=basic(*ADMIN)).status_code == 200


def test_metrics_public_opens_them(tmp_path: Path) -> None:
    with registry(tmp_path, {"metrics": {"public": True}}) as http:
        answer = http.get("/metrics")
        assert answer.status_code == 200 and QUOTA_LINE in answer.text


def test_with_auth_off_they_are_open_unless_a_token_is_set(tmp_path: Path) -> None:
    with registry(tmp_path / "open", {"auth": {"enabled": False}}) as http:
        assert http.get("/metrics").status_code == 200
    with registry(tmp_path / "token", {"auth": {"enabled": False}, "metrics": {"token": TOKEN}}) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def requests_to_base(text: str) -> float:
    """http_requests_total summed over the samples of route /v2/."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'route="/v2/"' in line
    )


def scrape(listen: str) -> httpx.Response:
    """On a new connection each time, so each may go to either worker."""
    with httpx.Client(timeout=HTTP_TIMEOUT) as scraper:
        return scraper.get(f"http://{listen}/metrics", headers={"Connection": "close"})


def test_metrics_listen_serves_every_workers_sum_on_its_own_port(make_server: Any, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    server: RunningServer = make_server(
        {"auth": {"enabled": True}, "http": {"workers": 2}, "metrics": {"listen": listen}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    # Not on the public port any more, not even for an administrator.
    assert httpx.get(f"{server.url}/metrics", auth=ADMIN, timeout=HTTP_TIMEOUT).status_code == 404
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            assert http.get("/v2/", headers={"Connection": "close"}).status_code == 200
    deadline = time.monotonic() + 10  # each worker hands its counts over within about a second
    while requests_to_base(scrape(listen).text) < 40:
        assert time.monotonic() < deadline, "the listener's counts never reached the 40 requests"
        time.sleep(0.2)
    # Every scrape from then on, whichever worker takes it, has both workers' counts.
    for _ in range(8):
        answer = scrape(listen)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        assert requests_to_base(answer.text) >= 40
    assert httpx.get(f"http://{listen}/other", timeout=HTTP_TIMEOUT).status_code == 404
