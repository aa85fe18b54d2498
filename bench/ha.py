"""`--backend ha`: dockyard on PostgreSQL + Redis + S3, against distribution on its filesystem.

The HA stores run here, on loopback, thrown away after the run: a PostgreSQL 15 cluster, a
redis-server and a SeaweedFS (`weed mini`, S3 API), started by the test suite's own launchers
(tests/support). Two dockyards run on them, each with its own database, Redis database and S3
prefix, so neither sees the other's data:

- `dockyard`: blob GETs answer 307 to a presigned SeaweedFS URL (the default with S3), and the load
  generator follows it, as docker, containerd and skopeo do;
- `dockyard proxied`: `storage.redirect.disable: true`, dockyard streams the bytes from S3 itself.

Both distributions (2.8.2 and v3.1.1) stay on their filesystems: the references the ratios are taken to.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.runner import stopping
from bench.seed import Seeded, seed
from bench.servers import Server, start_dockyard, start_references

if TYPE_CHECKING:
    from tests.support.postgres import PostgresCluster
    from tests.support.redis import RedisServer
    from tests.support.seaweedfs import RunningSeaweedFS

PROXIED = "dockyard proxied"  # the alternate candidate's name (Scenario.candidate)


@dataclass(frozen=True)
class HaStores:
    postgres: PostgresCluster
    redis: RedisServer
    s3: RunningSeaweedFS


def start_stores(stack: ExitStack, workdir: Path) -> HaStores:
    # The test suite's launchers; imported here so the local bench never needs them.
    from tests.support.postgres import start_postgres
    from tests.support.redis import RedisServer
    from tests.support.seaweedfs import start_seaweedfs

    postgres = start_postgres()
    stack.callback(postgres.stop)
    redis = RedisServer(workdir / "redis")
    redis.start()
    stack.callback(redis.kill)
    s3 = start_seaweedfs(workdir / "seaweedfs")
    stack.callback(s3.stop)
    return HaStores(postgres, redis, s3)


def dockyard_sections(stores: HaStores, name: str, redis_db: int, redirect: bool) -> dict[str, Any]:
    """The config sections that put one dockyard on the stores, under its own names."""
    return {
        "database": {"url": stores.postgres.create_database(name)},
        "redis": {"url": f"redis://127.0.0.1:{stores.redis.port}/{redis_db}"},
        "storage": {
            "s3": {
                "bucket": stores.s3.bucket,
                "region": "us-east-1",
                "regionendpoint": stores.s3.endpoint,
                "accesskey": stores.s3.access_key,
                "secretkey": stores.s3.secret_key,
                "rootdirectory": f"/{name}",
            },
            "redirect": {"disable": not redirect},
        },
    }


def start_ha_servers(
    stack: ExitStack, workdir: Path, workers: int, source: Path | None
) -> tuple[list[Server], Server, dict[str, Server]]:
    """Both distributions (filesystem), dockyard with redirects, and the proxying dockyard as an alternate."""
    stores = start_stores(stack, workdir)
    references = [stopping(stack, server) for server in start_references(workdir)]
    candidate = stopping(
        stack,
        start_dockyard(
            workdir / "dockyard",
            workers,
            source,
            sections=dockyard_sections(stores, "bench_redirect", 0, redirect=True),
        ),
    )
    proxied = stopping(
        stack,
        start_dockyard(
            workdir / "dockyard-proxied",
            workers,
            source,
            sections=dockyard_sections(stores, "bench_proxied", 1, redirect=False),
            name=PROXIED,
        ),
    )
    return references, candidate, {PROXIED: proxied}


def seed_ha(server: Server) -> Seeded:
    """The seed without the 99 catalog repositories (no ha scenario lists the catalog): seeding through
    S3 and PostgreSQL is slow enough without them."""
    return seed(server.host, server.port, repositories=1)


BACKEND_CAPTION = (
    "dockyard on PostgreSQL 15 + Redis + SeaweedFS (S3 API), all on loopback on the same CPUs; "
    "both distributions on their filesystems."
)
