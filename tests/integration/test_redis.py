"""Two `dockyard serve` nodes on one database and one storage, joined by a real Redis.

The nodes have separate data directories, so their node-local change feeds (a file in each datadir)
cannot tell one about the other's writes: only Redis can. Node A reads redis.url from its config file,
node B from DOCKYARD_REDIS_URL.

To see whether a node is caching, the tests move a tag behind the registry's back (an UPDATE in the
shared SQLite file, which bumps nothing): a caching node keeps answering the old digest, a node
that is not caching answers the new one at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from dockyard.api.health import health_routes, readiness_checks
from dockyard.config.loader import load_config, load_settings
from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.errors import ConfigError
from dockyard.storage.driver import build_driver
from tests.support.ociclient import OCIClient
from tests.support.redis import RedisServer
from tests.support.server import RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "redis-admin-password-1")
MAX_FAILURES = 3
REPO = "cluster/app"
PROPAGATION_SECONDS = 2.0


@dataclass
class Cluster:
    redis: RedisServer
    a: RunningServer
    b: RunningServer
    database: Path

    def client(self, node: RunningServer) -> OCIClient:
        return OCIClient(httpx.Client(base_url=node.url, auth=ADMIN, timeout=HTTP_TIMEOUT))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("redis-cluster")
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    database = workdir / "shared" / "dockyard.db"
    database.parent.mkdir()
    shared: dict[str, Any] = {
        "database": {"url": f"sqlite:///{database}"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "shared" / "storage")}},
        "auth": {"enabled": True, "login_limit": {"max_failures": MAX_FAILURES, "window": "1m"}},
    }
    env = {"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    nodes: list[RunningServer] = []
    try:
        a_config = {**shared, "datadir": str(workdir / "a" / "data"), "redis": {"url": redis_server.url}}
        nodes.append(start_server(workdir / "a", a_config, env=env))
        b_config = {**shared, "datadir": str(workdir / "b" / "data")}
        nodes.append(
            start_server(workdir / "b", b_config, env={**env, "DOCKYARD_REDIS_URL": redis_server.url})
        )
        yield Cluster(redis_server, nodes[0], nodes[1], database)
    finally:
        for node in nodes:
            node.stop()
        redis_server.kill()


def tag_digest(client: OCIClient, tag: str) -> str:
    answer = client.get_manifest(REPO, tag)
    assert answer.status_code == 200, answer.text
    return answer.headers["Docker-Content-Digest"]


def eventually(read: Callable[[], str], expected: str, timeout: float = PROPAGATION_SECONDS) -> str:
    deadline = time.monotonic() + timeout
    seen = read()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        seen = read()
    return seen


def move_tag_behind_the_registrys_back(database: Path, tag: str, digest: str) -> None:
    with sqlite3.connect(database, timeout=10) as connection:
        connection.execute(
            "UPDATE tags SET manifest_id = (SELECT id FROM manifests WHERE digest = ?) WHERE name = ?",
            (digest, tag),
        )


def caches(cluster: Cluster, node: RunningServer, tag: str, seeds: tuple[str, str]) -> bool:
    """Whether `node` answers `tag` from a cache: it keeps the old answer after a sneaky move."""
    writer, reader = cluster.client(cluster.a), cluster.client(node)
    first = writer.push_image(REPO, tag, seed=seeds[0]).digest
    second = writer.push_image(REPO, None, seed=seeds[1]).digest  # by digest: no tag moves
    assert eventually(lambda: tag_digest(reader, tag), first) == first
    tag_digest(reader, tag)  # cached now, if the node caches
    move_tag_behind_the_registrys_back(cluster.database, tag, second)
    return tag_digest(reader, tag) == first


def test_health_and_readiness_name_every_backend(cluster: Cluster) -> None:
    for node in (cluster.a, cluster.b):
        alive = httpx.get(f"{node.url}/healthz", timeout=HTTP_TIMEOUT)
        assert alive.status_code == 200
        ready = httpx.get(
            f"{node.url}/readyz", timeout=HTTP_TIMEOUT
        )  # no credentials: load balancers have none
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok", "redis": "ok"}}


def test_a_tag_moved_on_one_node_is_seen_by_the_others_cache(cluster: Cluster) -> None:
    a, b = cluster.client(cluster.a), cluster.client(cluster.b)
    old = a.push_image(REPO, "moving", seed="old").digest
    assert eventually(lambda: tag_digest(b, "moving"), old) == old
    for _ in range(3):
        assert tag_digest(b, "moving") == old  # B's cache holds the tag now

    new = a.push_image(REPO, "moving", seed="new").digest

    assert eventually(lambda: tag_digest(b, "moving"), new) == new
    b.push_image(REPO, "moving", seed="newer")  # and the other way round
    newer = tag_digest(b, "moving")
    assert eventually(lambda: tag_digest(a, "moving"), newer) == newer


def test_a_push_to_another_repository_keeps_the_other_nodes_cache(cluster: Cluster) -> None:
    a, b = cluster.client(cluster.a), cluster.client(cluster.b)

    def digest_on_b(repo: str, tag: str) -> str:
        answer = b.get_manifest(repo, tag)
        assert answer.status_code == 200, answer.text
        return answer.headers["Docker-Content-Digest"]

    kept = a.push_image("cluster/kept", "kept-tag", seed="kept").digest
    sneaky = a.push_image("cluster/kept", None, seed="sneaky").digest
    assert eventually(lambda: digest_on_b("cluster/kept", "kept-tag"), kept) == kept  # B caches it
    move_tag_behind_the_registrys_back(cluster.database, "kept-tag", sneaky)

    for round in range(3):
        busy = a.push_image("cluster/busy", "busy-tag", seed=f"busy-{round}").digest
        assert eventually(lambda: digest_on_b("cluster/busy", "busy-tag"), busy) == busy
        assert digest_on_b("cluster/kept", "kept-tag") == kept  # still B's cached answer

    first = a.push_image("cluster/kept", "other-tag", seed="other").digest  # another tag of it
    assert eventually(lambda: digest_on_b("cluster/kept", "other-tag"), first) == first  # B caches it
    other = a.push_image("cluster/kept", "other-tag", seed="other-moved").digest
    assert eventually(lambda: digest_on_b("cluster/kept", "other-tag"), other) == other  # B heard it
    assert digest_on_b("cluster/kept", "kept-tag") == kept  # a write to another tag keeps it
    assert a.http.delete(f"/v2/cluster/kept/manifests/{other}").status_code == 202  # a manifest deleted
    assert eventually(lambda: digest_on_b("cluster/kept", "kept-tag"), sneaky) == sneaky


def test_login_failures_count_across_nodes(cluster: Cluster) -> None:
    user, password = "sprayed", "the-right-password-1"
    created = httpx.post(
        f"{cluster.a.url}/api/v1/users",
        json={"username": user, "password": password},
        auth=ADMIN,
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    # Wrong passwords from one address, spread over both nodes: each node saw fewer than
    # MAX_FAILURES itself, together they reached it, so that address is refused on both.
    for attempt, node in enumerate((cluster.a, cluster.b, cluster.a)):
        wrong = token(node, user, f"wrong-{attempt}", "127.0.0.20")
        assert wrong.status_code == 401
    for node in (cluster.a, cluster.b):
        right = token(node, user, password, "127.0.0.20")
        assert right.status_code == 401, f"{node.url} let the address in after {MAX_FAILURES} failures"
    # The owner, from an address that has not failed, and other users are not affected.
    for number, node in enumerate((cluster.a, cluster.b)):
        assert token(node, user, password, f"127.0.0.{30 + number}").status_code == 200
    assert token(cluster.b, *ADMIN, "127.0.0.40").status_code == 200


def token(node: RunningServer, username: str, password: str, address: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=node.url, transport=transport, timeout=HTTP_TIMEOUT) as http:
        return http.get("/token", params={"service": "dockyard"}, auth=(username, password))


def test_redis_killed_then_restarted(cluster: Cluster) -> None:
    a, b = cluster.client(cluster.a), cluster.client(cluster.b)
    assert caches(cluster, cluster.b, "probe-1", ("p1", "p2")), "node B does not cache while Redis is up"

    cluster.redis.kill()
    try:
        # B notices the dropped subscription and stops caching.
        moved = a.push_image(REPO, "during", seed="during-1").digest
        assert eventually(lambda: tag_digest(b, "during"), moved) == moved
        for node in (cluster.a, cluster.b):
            # Still ready (it serves, uncached): HAProxy must not take every node out for Redis.
            ready = httpx.get(f"{node.url}/readyz", timeout=HTTP_TIMEOUT)
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["redis"].startswith("failed")
            assert ready.json()["checks"]["database"] == "ok"
        # Every change is seen at once, with no pub/sub to carry it: nothing is cached.
        for seed in ("during-2", "during-3"):
            moved = a.push_image(REPO, "during", seed=seed).digest
            assert tag_digest(b, "during") == moved
        assert not caches(cluster, cluster.b, "probe-2", ("p3", "p4"))
        assert not caches(cluster, cluster.a, "probe-3", ("p5", "p6"))
    finally:
        cluster.redis.start()

    deadline = time.monotonic() + 10
    while (
        httpx.get(f"{cluster.b.url}/readyz", timeout=HTTP_TIMEOUT).json()["status"] != "ok"
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert httpx.get(f"{cluster.a.url}/readyz", timeout=HTTP_TIMEOUT).json()["status"] == "ok"
    # Caching resumes once the nodes have subscribed again (they retry every second).
    deadline = time.monotonic() + 10
    attempt = 0
    while not caches(cluster, cluster.b, f"probe-back-{attempt}", (f"b{attempt}", f"c{attempt}")):
        assert time.monotonic() < deadline, "node B did not cache again after Redis came back"
        attempt += 1
        time.sleep(0.5)
    new = a.push_image(REPO, "after", seed="after-1").digest
    assert eventually(lambda: tag_digest(b, "after"), new) == new


def test_readiness_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # A PostgreSQL URL on a port nothing listens on: the database a node lost.
    dead = Database(build_engine(f"postgresql://dockyard@127.0.0.1:{free_port()}/dockyard"))
    driver = build_driver("filesystem", rootdirectory=tmp_path / "storage")
    app = Starlette(routes=health_routes(readiness_checks(dead, driver)))

    async def probe() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node", timeout=HTTP_TIMEOUT
        ) as http:
            return await http.get("/healthz"), await http.get("/readyz")

    alive, ready = asyncio.run(probe())
    assert alive.status_code == 200  # alive, but not ready
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"].startswith("failed: ")
    assert ready.json()["checks"]["storage"] == "ok"
    assert "127.0.0.1" not in ready.text  # the public body names no addresses


def test_redis_settings_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    url = "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/1"
    assert load_settings(None, {"DOCKYARD_REDIS_URL": url}).redis.url == url
    config = tmp_path / "config.yml"
    config.write_text("redis:\n  url: rediss://127.0.0.1:6380/0\n")
    assert load_settings(config, {}).redis.url == "rediss://127.0.0.1:6380/0"
    with pytest.raises(ConfigError, match=r"redis\.url"):
        load_settings(None, {"DOCKYARD_REDIS_URL": "memcached://127.0.0.1:11211"})
    # registry:2's redis section is accepted with a warning, and does not turn Redis on.
    config.write_text("version: 0.1\nredis:\n  addr: 127.0.0.1:6379\n  db: 0\n")
    loaded = load_config(config, {})
    assert loaded.settings.redis.url is None
    assert any(warning.startswith("redis.addr") for warning in loaded.warnings)
