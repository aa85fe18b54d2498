"""Redis and PostgreSQL going away under load, and coming back.

- Redis killed: the nodes keep serving (without caches, so never stale) and HAProxy keeps them in;
  once Redis is back, a change made on one node is seen on the others again.
- PostgreSQL stopped: requests fail the way clients retry (5xx from the nodes, 503 from HAProxy once it
  took them out); after the restart the nodes reconnect by themselves and nothing pushed is lost.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.cluster.deployment import Cluster, node_name
from tests.cluster.load import Load, verify_all
from tests.cluster.resilient import OCI_MANIFEST, RETRYABLE_STATUS, ResilientClient, make_image
from tests.cluster.test_cross_node import eventually

OUTAGE_TIMEOUT = 60.0


def readiness(node_url: str) -> dict[str, str]:
    try:
        return dict(httpx.get(f"{node_url}/readyz", timeout=5).json().get("checks", {}))
    except (httpx.HTTPError, ValueError):
        return {}


def test_redis_killed_under_load_then_restarted(cluster: Cluster, tmp_path: Path) -> None:
    load = Load(cluster, tmp_path, pushers=2, pullers=1, skopeo=False)
    load.start()
    load.wait_for_pushes(3)

    cluster.redis.kill()
    try:
        # Every node notices; none is taken out of HAProxy for it, and pushes and pulls go on.
        for node in cluster.nodes:
            assert (
                eventually(lambda node=node: readiness(node.url).get("redis", "")[:6], "failed") == "failed"
            )
        load.wait_for_pushes(4)
        assert all(state == "UP" for state in cluster.proxy.server_states().values())
    finally:
        cluster.redis.start()
    for node in cluster.nodes:
        assert eventually(lambda node=node: readiness(node.url).get("redis"), "ok", timeout=30) == "ok"
    load.wait_for_pushes(3)
    load.stop()
    assert not load.journal.fatal, load.journal.fatal
    assert not load.journal.retried, f"Redis is not needed to serve: {load.journal.retried}"
    verify_all(cluster, load.journal, load.pushed)

    # Changes reach every node again: a tag moved through node1 is seen on node2 and node3, which
    # had it cached.
    writer = ResilientClient(cluster.http(cluster.nodes[0].url), load.journal, 1 << 20)
    old, new = (make_image("outage/redis", "moving", [f"{seed} layer".encode()]) for seed in ("old", "new"))
    writer.push_image(old)
    readers = [cluster.http(node.url) for node in cluster.nodes[1:]]

    def tag_digest(http: httpx.Client) -> str:
        answer = http.get("/v2/outage/redis/manifests/moving", headers={"Accept": OCI_MANIFEST})
        return answer.headers.get("Docker-Content-Digest", str(answer.status_code))

    for http in readers:
        assert eventually(lambda http=http: tag_digest(http), old.digest) == old.digest
    writer.push_image(new)
    for http in readers:
        assert eventually(lambda http=http: tag_digest(http), new.digest) == new.digest
        http.close()


def test_postgres_restarted_under_load(cluster: Cluster, tmp_path: Path) -> None:
    load = Load(cluster, tmp_path, pushers=2, pullers=1, skopeo=False)
    load.start()
    load.wait_for_pushes(3)

    cluster.stop_postgres()
    try:
        # A node asked directly answers a retryable 5xx; HAProxy takes every node out and answers 503.
        with cluster.http(cluster.nodes[0].url) as direct:
            answer = direct.get("/v2/outage/never/tags/list", timeout=10)
            assert answer.status_code in RETRYABLE_STATUS, answer.text
            assert "postgres" not in answer.text.lower() and "127.0.0.1" not in answer.text
        for index in range(len(cluster.nodes)):
            cluster.proxy.wait_for_state(node_name(index), up=False, timeout=OUTAGE_TIMEOUT)
        with cluster.http() as proxy:
            assert proxy.get("/v2/").status_code == 503
    finally:
        cluster.start_postgres_again()
    restarted_at = time.monotonic()
    cluster.wait_all_up()  # the nodes reconnect by themselves: nothing was restarted but PostgreSQL
    back_at = time.monotonic()
    load.wait_for_pushes(4)
    load.stop()
    assert not load.journal.fatal, load.journal.fatal
    verify_all(cluster, load.journal, load.pushed)
    print(f"\nPostgreSQL back to all nodes UP in HAProxy: {back_at - restarted_at:.1f}s; "
          f"{load.pushes()} pushes; failures clients retried: {dict(load.journal.retried)}")  # fmt: skip
