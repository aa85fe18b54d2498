"""`python -m bench.writes`: in-process CPU per small write request, what the scale bench's writes row
sends: pushes of the scale image into new repositories, each two cross-repository mounts (`POST
/v2/<name>/blobs/uploads/?mount=<digest>&from=scale/base`) and a manifest PUT by tag, through the
whole ASGI app as a worker builds it (`build_services` + `create_app`, auth off as in the scale
bench), driven on one event loop without sockets or an HTTP client. CPU is `time.process_time()` of
the whole process (its threads: the database calls handed off to worker threads), statements are
counted on the engine (BEGIN and COMMIT not seen there on PostgreSQL). With `--postgres` also the
throwaway cluster's CPU per request (user + system time of its processes, from /proc): what the
database's own side of a write costs, on the same machine in the scale bench.

    python -m bench.writes [--pushes 200] [--rounds 3] [--database-url postgresql://...]
                           [--postgres] [--profile FILE] [--only mount|put]

`--postgres` starts a throwaway PostgreSQL cluster (the test suite's launcher) and measures on it;
`--profile FILE` writes cProfile stats of the last round (`python -m pstats FILE`), with the calls
the app hands to worker threads (`anyio.to_thread.run_sync`, the small-write threads) run inline so
the profile sees them. Prints µs of CPU per request and statements per push, per round; a benchmark,
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.asgi import Lifespan, request
from bench.misses import MANIFEST_TYPE, seed
from bench.procs import tree_cpu_seconds
from bench.scalelayout import ScaleImage


async def call(app: Any, method: str, path: str, query: bytes = b"", body: bytes = b"") -> int:
    headers = [(b"user-agent", b"bench")]
    if body:
        headers.append((b"content-type", MANIFEST_TYPE.encode()))
    return await request(app, method, path, headers, query, body)


Request = tuple[str, str, bytes, bytes]  # method, path, query, body


def push(image: ScaleImage, name: str) -> list[Request]:
    mounts = [
        ("POST", f"/v2/{name}/blobs/uploads/", f"mount={digest}&from=scale/base".encode(), b"")
        for digest in (image.config_digest, image.layer_digest)
    ]
    return [*mounts, ("PUT", f"/v2/{name}/manifests/latest", b"", image.manifest)]


async def measure(app: Any, requests: list[Request], kinds: set[str]) -> tuple[float, float, int]:
    """(µs of CPU, µs of wall time) per request of `kinds` (the others run outside the clock), and how
    many were timed."""
    cpu = wall = 0.0
    timed = 0
    for method, path, query, body in requests:
        mine = method in kinds
        if mine:
            c, w = time.process_time(), time.perf_counter()
        status = await call(app, method, path, query, body)
        if mine:
            cpu += time.process_time() - c
            wall += time.perf_counter() - w
            timed += 1
        if status not in (201, 202):
            raise RuntimeError(f"{method} {path}?{query.decode()}: {status}")
    return cpu / timed * 1e6, wall / timed * 1e6, timed


@contextlib.contextmanager
def counting(engine: Any) -> Any:
    from sqlalchemy import event

    sent = [0]

    def record(*args: Any) -> None:
        sent[0] += 1

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def run(
    options: argparse.Namespace, workdir: Path, database_url: str | None, server_pid: int | None = None
) -> None:
    from dockyard.app import build_services, create_app
    from dockyard.config.settings import Settings
    from dockyard.observability.logging import configure_logging

    config: dict[str, Any] = {
        "datadir": str(workdir / "data"),
        "auth": {"enabled": False},
        "jobs": {"run_in_serve": False},
        "log": {"level": options.log_level},
    }
    if database_url:
        config["database"] = {"url": database_url}
    if options.profile:
        import anyio.to_thread

        async def inline(fn: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(*args)

        anyio.to_thread.run_sync = inline  # type: ignore[assignment]
        from dockyard.api.oci.point_reads import PointReads

        async def inline_method(self: Any, fn: Any, *args: Any) -> Any:
            return fn(*args)

        PointReads.call_through = inline_method  # type: ignore[method-assign]
    settings = Settings.model_validate(config)
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)  # as a worker
    services = build_services(settings)
    image = ScaleImage.build()
    seed(services, image, 0)
    app = create_app(services)
    life = Lifespan(app)
    await life.startup()
    gc.freeze()  # as `serve` does before its workers start (cli/server.py)
    kinds = {"mount": {"POST"}, "put": {"PUT"}}.get(options.only or "", {"POST", "PUT"})
    counter = iter(range(10**9))

    def pushes(count: int) -> list[Request]:
        return [r for _ in range(count) for r in push(image, f"scale/w-{next(counter):07d}")]

    await measure(app, pushes(20), kinds)  # warm up: imports, compiled statements, connections
    results = []
    server_cpu: list[float] = []  # the PostgreSQL cluster's µs of CPU per timed request, per round
    profiler = cProfile.Profile() if options.profile else None
    for index in range(options.rounds):
        requests = pushes(options.pushes)
        last = index == options.rounds - 1
        with counting(services.db.engine) as sent:
            if profiler is not None and last:
                profiler.enable()
            server_before = tree_cpu_seconds(server_pid) if server_pid is not None else 0.0
            cpu, wall, timed = await measure(app, requests, kinds)
            if server_pid is not None:
                server_cpu.append(round((tree_cpu_seconds(server_pid) - server_before) / timed * 1e6, 1))
            if profiler is not None and last:
                profiler.disable()
        results.append((cpu, wall, sent[0] / options.pushes))
    await life.shutdown()
    services.close()
    if profiler is not None:
        profiler.dump_stats(options.profile)
    database = "PostgreSQL" if database_url else "SQLite"
    cpu = [round(c, 1) for c, _, _ in results]
    wall = [round(w, 1) for _, w, _ in results]
    statements = [round(s, 2) for _, _, s in results]
    what = options.only or "mount+put"
    print(
        f"{database} {what}: CPU µs/request median {statistics.median(cpu):.1f} (rounds {cpu}); "
        f"wall µs median {statistics.median(wall):.1f}; statements/push {statements}"
        + (f"; PostgreSQL's CPU µs/request {server_cpu}" if server_cpu else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster")
    parser.add_argument("--only", choices=["mount", "put"], help="time one kind of request only")
    parser.add_argument("--profile", help="write cProfile stats of the last round to this file")
    parser.add_argument("--log-level", default="info", help="log.level (info: an access-log line a request)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as scratch, contextlib.ExitStack() as stack:
        url = options.database_url
        server_pid = None
        if options.postgres:
            from tests.support.postgres import start_postgres

            cluster = start_postgres()
            stack.callback(cluster.stop)
            url = cluster.create_database("bench_writes")
            server_pid = cluster.process.pid
        asyncio.run(run(options, Path(scratch), url, server_pid))


if __name__ == "__main__":
    main()
