"""Limits shared through Redis by two `dockyard serve` nodes of two workers each, on one database and
one storage: the budget of a client is one budget, whichever node and worker its requests reach.

Open registry (no auth): a client is its address, so each test takes a loopback address of its own
(127.0.0.N). Each request goes on a new connection, so requests spread over the workers too.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import server as server_support
from tests.support.ociclient import digest_of
from tests.support.redis import RedisServer
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

BURST = 6
UPLOADS = 2
_addresses = (f"127.0.0.{n}" for n in itertools.count(20))


@dataclass
class Cluster:
    a: RunningServer
    b: RunningServer

    def request(
        self, node: RunningServer, address: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=node.url, transport=transport, timeout=HTTP_TIMEOUT) as http:
            return http.request(method, path, **kwargs)

    def alternate(self) -> Iterator[RunningServer]:
        return itertools.cycle([self.a, self.b])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("limits-cluster")
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    factory = server_support.database_url_factory
    database = factory(str(workdir / "shared")) if factory else f"sqlite:///{workdir / 'shared.db'}"
    shared: dict[str, Any] = {
        "database": {"url": database},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
        "redis": {"url": redis_server.url},
        "http": {"workers": 2},
        # A slow refill: the tests see the burst, and nothing trickles back while they run.
        "limits": {"address": {"rate": 0.01, "burst": BURST}, "uploads_per_client": UPLOADS},
    }
    nodes: list[RunningServer] = []
    try:
        for name in ("a", "b"):
            nodes.append(start_server(workdir / name, {**shared, "datadir": str(workdir / name / "data")}))
        yield Cluster(nodes[0], nodes[1])
    finally:
        for node in nodes:
            node.stop()
        redis_server.kill()


def test_two_nodes_of_two_workers_share_one_request_budget(cluster: Cluster) -> None:
    address = next(_addresses)
    nodes = cluster.alternate()
    started = time.monotonic()
    answers = [cluster.request(next(nodes), address, "GET", "/v2/") for _ in range(3 * BURST)]
    elapsed = time.monotonic() - started
    assert [answer.status_code for answer in answers] == [200] * BURST + [429] * (2 * BURST)
    refused = answers[-1]
    assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    # The next token comes 100 s (1 / rate) after the burst began, less what has passed since (CI
    # once took 12 s for these requests on a loaded machine: 88).
    assert 100 - elapsed - 1 <= int(refused.headers["Retry-After"]) <= 100
    # Another client is not slowed by this one.
    assert cluster.request(cluster.b, next(_addresses), "GET", "/v2/").status_code == 200


def test_a_forged_x_forwarded_for_does_not_escape_the_limit(cluster: Cluster) -> None:
    address = next(_addresses)
    nodes = cluster.alternate()
    answers = [
        cluster.request(next(nodes), address, "GET", "/v2/", headers={"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(BURST + 3)
    ]
    assert [answer.status_code for answer in answers] == [200] * BURST + [429] * 3


def test_upload_places_are_shared_by_the_nodes(cluster: Cluster) -> None:
    address = next(_addresses)
    start = "/v2/limits/app/blobs/uploads/"
    first = cluster.request(cluster.a, address, "POST", start)
    second = cluster.request(cluster.b, address, "POST", start)
    assert (first.status_code, second.status_code) == (202, 202)
    third = cluster.request(cluster.a, address, "POST", start)
    assert third.status_code == 429, third.text
    assert "uploads open" in third.json()["errors"][0]["message"]
    # The upload started on node A finishes on node B, which gives its place back for both.
    done = cluster.request(
        cluster.b,
        address,
        "PUT",
        first.headers["Location"],
        params={"digest": digest_of(b"layer")},
        content=b"layer",
    )
    assert done.status_code == 201, done.text
    assert cluster.request(cluster.a, address, "POST", start).status_code == 202
