"""A server killed mid-blob during a first pull through the cache (a real `dockyard serve` with two
workers, Debian's docker-registry upstream behind the counting front, slowed down so the kill lands
mid-blob): nothing half-written is recorded (no blob row, nothing at the blob's content address), and
after a restart on the same data directory a pull gets the right bytes, promptly (the killed fetch's
lock does not hold it up for its TTL)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from dockyard.config.loader import load_settings
from dockyard.db.engine import build_engine
from dockyard.proxy.cache import LOCK_TTL
from dockyard.storage.paths import blob_data_path
from tests.integration.test_proxy import ADMIN, CONFIG, USER, Challenged, manifest_of, push
from tests.support.fronts import Front, running_front
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

LAYER = 8 << 20


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    with running_registry2(tmp_path / "upstream", USER) as upstream, running_front(upstream) as running:
        yield running


def start(workdir: Path) -> RunningServer:
    return start_server(workdir, CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})


def kill(server: RunningServer) -> None:
    """SIGKILL to `dockyard serve` and every worker: a crash, nothing gets to clean up."""
    os.killpg(os.getpgid(server.process.pid), signal.SIGKILL)
    server.process.wait(10)


def recorded(server: RunningServer, digest: str) -> tuple[int, int]:
    """(blob rows, repository links) of `digest` in the metadata database."""
    engine = build_engine(load_settings(server.config_path).database_url)
    try:
        with engine.connect() as connection:
            blobs = connection.scalar(text("SELECT count(*) FROM blobs WHERE digest = :d"), {"d": digest})
            links = connection.scalar(
                text("SELECT count(*) FROM repository_blobs WHERE digest = :d"), {"d": digest}
            )
    finally:
        engine.dispose()
    return int(blobs or 0), int(links or 0)


def test_a_server_killed_mid_blob_records_nothing_and_a_pull_after_restart_is_right(
    tmp_path: Path, front: Front
) -> None:
    workdir = tmp_path / "dockyard"
    server = start(workdir)
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
            credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
            endpoint = {"name": "up", "url": front.url, "kind": "registry", "credentials": credentials}
            api.post("/endpoints", json=endpoint).raise_for_status()
            api.post(
                "/projects", json={"name": "hub", "public": True, "proxy": {"endpoint": "up"}}
            ).raise_for_status()
        image = push(front.target, "team/crash", "1", layer_size=LAYER)
        layer = image.blobs[image.layer]
        with httpx.Client(base_url=f"{server.url}/v2", timeout=HTTP_TIMEOUT, auth=Challenged()) as v2:
            assert manifest_of(v2, "hub/team/crash", "1").status_code == 200
            front.blob_pace = 0.02  # 64 KiB every 20 ms: the 8 MiB take about 2.5 s
            received = 0
            url = f"/hub/team/crash/blobs/{image.layer}"
            with pytest.raises(httpx.HTTPError), v2.stream("GET", url) as response:  # the kill cuts it
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received >= 1 << 20:  # the client has some of it, the fetch is mid-blob
                        kill(server)
        assert 0 < received < LAYER
        front.blob_pace = 0.0

        # Nothing half-written: no blob row, no link, nothing at the content address.
        assert recorded(server, image.layer) == (0, 0)
        storage = load_settings(server.config_path).storage_root
        assert not (storage / blob_data_path(image.layer)).exists()

        server = start(workdir)  # the same data directory, database and configuration
        started = time.monotonic()
        with httpx.Client(base_url=f"{server.url}/v2", timeout=LOCK_TTL * 2, auth=Challenged()) as v2:
            answer = v2.get(f"/hub/team/crash/blobs/{image.layer}")
            assert answer.status_code == 200, answer.text
            assert answer.content == layer
            assert time.monotonic() - started < LOCK_TTL / 2, "the dead fetch's lock held the pull up"
            # Recorded once its commit ends: that may be just after the client had every byte.
            deadline = time.monotonic() + 10
            while recorded(server, image.layer) != (1, 1):
                assert time.monotonic() < deadline, recorded(server, image.layer)
                time.sleep(0.1)
            again = v2.get(f"/hub/team/crash/blobs/{image.layer}")  # from the cache now
            assert again.content == layer
        assert (storage / blob_data_path(image.layer)).read_bytes() == layer
        assert front.count("GET", "blob") == 2  # the killed fetch, and the one after the restart
    finally:
        if server.process.poll() is None:
            server.stop()
