"""`python -m bench.misses`: in-process CPU per request that misses the read caches: a manifest GET by
tag and a blob HEAD, each in a random repository, through the whole ASGI app as a worker builds it
(`build_services` + `create_app`, auth off as in the scale bench), driven on one event loop without
sockets or an HTTP client. The caches are off (`storage.cache.memory: 0`), so every request reads the
database; `--cache 32MiB` measures hits instead (after the warm-up every repository is cached). CPU is
`time.process_time()`, all of the process's threads (the worker threads a lookup hands off to, the
pull recorder's flush thread): less moved by other processes' load than req/s, not immune to it.

    python -m bench.misses [--repositories 300] [--requests 3000] [--rounds 4] [--concurrency 1]
                           [--database-url postgresql://...] [--postgres] [--profile FILE]

Without `--database-url`: SQLite in a scratch data directory; `--postgres`: a throwaway PostgreSQL
cluster (the test suite's launcher), whose CPU per request (user + system time of its processes, from
/proc) is printed too: a miss's other half, on the same machine in the scale bench. `--concurrency N`:
N requests in flight at once (one at a time by default), as a worker of the scale bench has 32
(its 64 connections over 2 workers): PostgreSQL lookups asked for together share a round trip.
Seeds through the services as `bench.scaleseed` does. Prints µs of CPU and of wall time per
request, per round; a benchmark, not a test. `--profile FILE`: the measured rounds under cProfile
(the event loop's thread only: a point read handed to a thread is seen as the wait for it), its
pstats written to FILE and its top printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.asgi import Lifespan, request
from bench.procs import tree_cpu_seconds
from bench.scalelayout import ScaleImage, repository_name

BASE = "scale/base"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = (
    b"application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    b"application/vnd.docker.distribution.manifest.v2+json"
)


def seed(services: Any, image: ScaleImage, repositories: int) -> None:
    registry = services.registry
    for blob in (image.config, image.layer):
        state = services.blob_uploads.start(BASE)
        append = services.uploads.begin_append(state)
        append.write(blob)
        services.blob_uploads.commit(append.finish(), image.digest_of(blob))
    registry.put_manifest(BASE, "latest", image.manifest, MANIFEST_TYPE)
    for index in range(repositories):
        name = repository_name(index)
        registry.mount_blob(name, image.config_digest, BASE)
        registry.mount_blob(name, image.layer_digest, BASE)
        registry.put_manifest(name, "latest", image.manifest, MANIFEST_TYPE)


HEADERS = [(b"accept", ACCEPT), (b"user-agent", b"bench")]


async def measure(
    app: Any, paths: list[tuple[str, str]], server_pid: int | None = None, concurrency: int = 1
) -> tuple[float, float, float]:
    """(µs of CPU, µs of wall time, µs of the database server's CPU: 0 without `server_pid`) per
    request, with `concurrency` requests in flight at once."""
    server = tree_cpu_seconds(server_pid) if server_pid is not None else 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    waiting = iter(paths)

    async def client() -> None:
        for method, path in waiting:
            status = await request(app, method, path, HEADERS)
            if status != 200:
                raise RuntimeError(f"{method} {path}: {status}")

    await asyncio.gather(*(client() for _ in range(concurrency)))
    count = len(paths)
    cpu, wall = (time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6
    if server_pid is not None:
        server = (tree_cpu_seconds(server_pid) - server) / count * 1e6
    return cpu, wall, server


async def run(options: argparse.Namespace, workdir: Path, server_pid: int | None = None) -> None:
    from dockyard.app import build_services, create_app
    from dockyard.config.settings import Settings

    config: dict[str, Any] = {
        "datadir": str(workdir / "data"),
        "auth": {"enabled": False},
        "jobs": {"run_in_serve": False},
        "storage": {"cache": {"memory": options.cache}},
        "log": {"level": options.log_level, "accesslog": {"disabled": not options.access_log}},
    }
    if options.database_url:
        config["database"] = {"url": options.database_url}
    services = build_services(Settings.model_validate(config))
    image = ScaleImage.build()
    seed(services, image, options.repositories)
    app = create_app(services)
    life = Lifespan(app)
    await life.startup()
    rng = random.Random(18)
    kinds = {
        "manifest GET by tag": lambda name: ("GET", f"/v2/{name}/manifests/latest"),
        "blob HEAD": lambda name: ("HEAD", f"/v2/{name}/blobs/{image.layer_digest}"),
    }
    if options.only:
        kinds = {kind: make for kind, make in kinds.items() if options.only in kind.lower().split()}
    results: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
    for make in kinds.values():  # warm up: imports, compiled statements, connections
        await measure(app, [make(repository_name(index)) for index in range(options.repositories)])
    profile = cProfile.Profile() if options.profile else None
    for _ in range(options.rounds):
        for kind, make in kinds.items():
            names = [repository_name(rng.randrange(options.repositories)) for _ in range(options.requests)]
            paths = [make(name) for name in names]
            if profile is not None:
                profile.enable()
            results[kind].append(await measure(app, paths, server_pid, options.concurrency))
            if profile is not None:
                profile.disable()
    await life.shutdown()
    if profile is not None:
        profile.dump_stats(options.profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    database = "PostgreSQL" if options.database_url else "SQLite"
    database += f" cache={options.cache} log={options.log_level}"
    database += "" if options.access_log else " no-access-log"
    database += f" concurrency={options.concurrency}" if options.concurrency > 1 else ""
    for kind, rounds in results.items():
        cpu = [round(c, 1) for c, _, _ in rounds]
        wall = [round(w, 1) for _, w, _ in rounds]
        server = [round(s, 1) for _, _, s in rounds]
        print(
            f"{database} {kind}: CPU µs/request median {statistics.median(cpu):.1f} (rounds {cpu}); "
            f"wall µs median {statistics.median(wall):.1f}"
            + (f"; PostgreSQL's CPU µs/request {server}" if server_pid is not None else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.misses", description=__doc__)
    parser.add_argument("--repositories", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--database-url")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (the scale bench: 32 a worker)"
    )
    parser.add_argument("--only", choices=["get", "head"], help="one kind of request only")
    parser.add_argument("--cache", default="0", help="storage.cache.memory: 0 (every read misses) or a size")
    parser.add_argument("--log-level", default="info", help="log.level (info: an access-log line a request)")
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="log.accesslog.disabled, as the scale bench runs dockyard (with --log-level warn)",
    )
    parser.add_argument("--profile", metavar="FILE", help="cProfile the measured rounds into FILE (pstats)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-misses-") as scratch, contextlib.ExitStack() as stack:
        server_pid = None
        if options.postgres:
            from tests.support.postgres import start_postgres

            cluster = start_postgres()
            stack.callback(cluster.stop)
            options.database_url = cluster.create_database("bench_misses")
            server_pid = cluster.process.pid
        asyncio.run(run(options, Path(scratch), server_pid))


if __name__ == "__main__":
    main()
