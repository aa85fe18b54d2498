"""A proxy project on two `dockyard serve` nodes of two workers each, on one database, one storage and
one Redis, in front of Debian's docker-registry behind htpasswd (through the counting front): clients on
both nodes pulling one blob at once make one upstream GET (the fetch lock is Redis's), and with the
upstream failing, what either node cached is pulled stale from the other, by tag and by digest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.test_proxy import USER, Challenged, manifest_of, push
from tests.support import server as server_support
from tests.support.fronts import Front, running_front
from tests.support.redis import RedisServer
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "proxy-cluster-admin-password-1")


@dataclass
class Cluster:
    a: RunningServer
    b: RunningServer
    upstream: str
    front: Front


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("proxy-cluster")
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    factory = server_support.database_url_factory
    database = factory(str(workdir / "shared")) if factory else f"sqlite:///{workdir / 'shared.db'}"
    shared: dict[str, Any] = {
        "database": {"url": database},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
        "redis": {"url": redis_server.url},
        "http": {"workers": 2, "secret": "a-shared-secret-of-the-cluster-0123456789"},
        "auth": {"enabled": True},
        "upstream": {"allowed_networks": ["127.0.0.0/8"], "total_timeout": "3s"},
    }
    nodes: list[RunningServer] = []
    try:
        with running_registry2(workdir / "upstream", USER) as upstream, running_front(upstream) as front:
            for name in ("a", "b"):
                config = {**shared, "datadir": str(workdir / name / "data")}
                nodes.append(start_server(workdir / name, config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}))
            with httpx.Client(base_url=f"{nodes[0].url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
                credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
                endpoint = {"name": "up", "url": front.url, "kind": "registry", "credentials": credentials}
                api.post("/endpoints", json=endpoint).raise_for_status()
                project = {"name": "hub", "public": True, "proxy": {"endpoint": "up", "tag_ttl_seconds": 1}}
                api.post("/projects", json=project).raise_for_status()
            yield Cluster(nodes[0], nodes[1], upstream, front)
    finally:
        for node in nodes:
            node.stop()
        redis_server.kill()


def v2(node: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{node.url}/v2", timeout=HTTP_TIMEOUT, auth=Challenged())


def test_one_upstream_get_for_clients_on_both_nodes(cluster: Cluster) -> None:
    image = push(cluster.upstream, "team/both", "1", layer_size=8 << 20)
    with v2(cluster.b) as client:
        assert manifest_of(client, "hub/team/both", "1").status_code == 200
    cluster.front.reset()
    cluster.front.blob_delay = 1.0
    results: list[bytes] = []

    def pull(node: RunningServer) -> None:
        with v2(node) as client:
            results.append(client.get(f"/hub/team/both/blobs/{image.layer}").content)

    threads = [threading.Thread(target=pull, args=(node,)) for node in (cluster.a, cluster.b) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fetched = cluster.front.count("GET", "blob")
    cluster.front.reset()
    assert results == [image.blobs[image.layer]] * 6
    assert fetched == 1


def test_what_one_node_cached_the_other_serves_stale(cluster: Cluster) -> None:
    image = push(cluster.upstream, "team/stale", "1", layer_size=4096)
    with v2(cluster.a) as client:
        assert manifest_of(client, "hub/team/stale", "1").content == image.manifest
        assert client.get(f"/hub/team/stale/blobs/{image.layer}").status_code == 200
    time.sleep(1.2)  # past the TTL
    cluster.front.status = 503
    try:
        with v2(cluster.b) as client:
            assert manifest_of(client, "hub/team/stale", "1").content == image.manifest
            assert manifest_of(client, "hub/team/stale", image.digest).content == image.manifest
            assert client.get(f"/hub/team/stale/blobs/{image.layer}").content == image.blobs[image.layer]
            missing = manifest_of(client, "hub/team/stale", "2")
            assert missing.status_code == 503 and "503" in missing.json()["errors"][0]["message"]
    finally:
        cluster.front.reset()
    assert "serving team/stale:1 from the cache (stale)" in cluster.b.log()
