"""`python -m bench.blob_pushes`: in-process CPU per request of a blob push, through the whole ASGI app
as a worker builds it (`build_services` + `create_app`, auth off, SQLite with the WAL flushed as
shipped), driven on one event loop without sockets or an HTTP client (bench.asgi), as bench.writes
does for mounts and manifest PUTs:

- `push`: monolithic pushes of fresh `--size` blobs (1 MiB), a POST then a PUT with the body: CPU per
  push (both requests), and the `fdatasync` and `fsync` calls per push (the WAL's flushes, the blob's).
- `patch`: PATCHes of `--chunk` bytes (4 KiB: their fixed cost), `--per-upload` of them onto each
  upload, opened by a POST and committed by a PUT outside the clock: CPU per PATCH.

    python -m bench.blob_pushes [--only push|patch] [--pushes 100] [--patches 400] [--rounds 3]

CPU is `time.process_time()` of the whole process (its threads: the calls handed to worker threads),
wall time with it. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.asgi import Headers, Lifespan, http_scope

REPO = "bench/blobs"
OCTETS: Headers = [(b"content-type", b"application/octet-stream")]


async def send(
    app: Any, method: str, path: str, query: bytes = b"", body: bytes = b"", headers: Headers = OCTETS
) -> tuple[int, dict[bytes, bytes]]:
    """One request straight into the app: its status and response headers."""
    length = (b"content-length", str(len(body)).encode())
    scope = http_scope(method, path, [(b"host", b"registry.bench"), *headers, length], query)
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def respond(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])

    await app(scope, receive, respond)
    return answer["status"], answer["headers"]


def expect(status: int, wanted: int, what: str) -> None:
    if status != wanted:
        raise RuntimeError(f"{what}: {status}, not {wanted}")


@contextlib.contextmanager
def counting_syncs() -> Iterator[dict[str, int]]:
    """The fdatasync and fsync calls of this process while the block runs: the WAL's flushes call
    os.fdatasync (db.wal_flush), the filesystem driver's blob commits os.fsync."""
    counts = {"fdatasync": 0, "fsync": 0}
    real = {name: getattr(os, name) for name in counts}

    def counted(name: str) -> Any:
        def call(fd: int) -> None:
            counts[name] += 1
            real[name](fd)

        return call

    for name in counts:
        setattr(os, name, counted(name))
    try:
        yield counts
    finally:
        for name, function in real.items():
            setattr(os, name, function)


class Clock:
    """CPU and wall time of the requests run under `timed()`."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu += time.process_time() - cpu
            self.wall += time.perf_counter() - wall


async def start_upload(app: Any) -> str:
    status, headers = await send(app, "POST", f"/v2/{REPO}/blobs/uploads/")
    expect(status, 202, "POST")
    return headers[b"location"].decode().split("://", 1)[-1].partition("/")[2]


async def pushes(app: Any, count: int, size: int) -> tuple[Clock, Clock, dict[str, int]]:
    """`count` monolithic pushes (POST, PUT with the body): a clock for each of the two requests."""
    post, put = Clock(), Clock()
    with counting_syncs() as syncs:
        for _ in range(count):
            body = os.urandom(size)
            digest = f"digest=sha256:{hashlib.sha256(body).hexdigest()}".encode()
            with post.timed():
                location = await start_upload(app)
            with put.timed():
                status, _ = await send(app, "PUT", f"/{location}", digest, body)
            expect(status, 201, "PUT")
    return post, put, syncs


async def patches(app: Any, count: int, chunk: int, per_upload: int) -> Clock:
    """`count` PATCHes of `chunk` bytes, `per_upload` per upload: the clock runs around the PATCHes."""
    clock = Clock()
    done = 0
    while done < count:
        location = await start_upload(app)
        hasher = hashlib.sha256()
        for index in range(min(per_upload, count - done)):
            body = os.urandom(chunk)
            hasher.update(body)
            content_range = f"{index * chunk}-{(index + 1) * chunk - 1}".encode()
            with clock.timed():
                status, _ = await send(
                    app,
                    "PATCH",
                    f"/{location}",
                    body=body,
                    headers=[*OCTETS, (b"content-range", content_range)],
                )
            expect(status, 202, "PATCH")
            done += 1
        status, _ = await send(app, "PUT", f"/{location}", f"digest=sha256:{hasher.hexdigest()}".encode())
        expect(status, 201, "PUT")
    return clock


async def run(options: argparse.Namespace, workdir: Path) -> None:
    from dockyard.app import build_services, create_app
    from dockyard.config.settings import Settings
    from dockyard.observability.logging import configure_logging

    config: dict[str, Any] = {
        "datadir": str(workdir / "data"),
        "auth": {"enabled": False},
        "jobs": {"run_in_serve": False},
        "log": {"level": options.log_level},
    }
    settings = Settings.model_validate(config)
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)  # as a worker
    services = build_services(settings)
    app = create_app(services)
    life = Lifespan(app)
    await life.startup()
    gc.freeze()  # as `serve` does before its workers start (cli/server.py)
    kinds = [options.only] if options.only else ["push", "patch"]
    await pushes(app, 10, options.size)  # warm up: imports, compiled statements, connections, threads
    await patches(app, 20, options.chunk, options.per_upload)
    # Per line: per round, µs of CPU and of wall time per operation.
    results: dict[str, list[tuple[float, float]]] = {}
    syncs_per_push = ""
    for _ in range(options.rounds):
        measured: dict[str, tuple[float, float]] = {}
        if "push" in kinds:
            post, put, syncs = await pushes(app, options.pushes, options.size)
            count = options.pushes
            measured[f"push {options.size // 1024} KiB POST+PUT"] = (post.cpu + put.cpu, post.wall + put.wall)
            measured["  its POST"] = (post.cpu, post.wall)
            measured = {
                what: (cpu / count * 1e6, wall / count * 1e6) for what, (cpu, wall) in measured.items()
            }
            syncs_per_push = f"fdatasync {syncs['fdatasync'] / count:.2f}, fsync {syncs['fsync'] / count:.2f}"
        if "patch" in kinds:
            clock = await patches(app, options.patches, options.chunk, options.per_upload)
            measured[f"PATCH {options.chunk} B"] = (
                clock.cpu / options.patches * 1e6,
                clock.wall / options.patches * 1e6,
            )
        for what, figures in measured.items():
            results.setdefault(what, []).append(figures)
    await life.shutdown()
    services.close()
    for what, rounds in results.items():
        cpu = [round(c) for c, _ in rounds]
        wall = statistics.median(w for _, w in rounds)
        print(f"{what}: CPU µs median {statistics.median(cpu):.0f} (rounds {cpu}); wall µs median {wall:.0f}")
    if syncs_per_push:
        print(f"per push: {syncs_per_push}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.blob_pushes", description=__doc__)
    parser.add_argument("--only", choices=["push", "patch"], help="one kind of request only")
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="bytes per pushed blob")
    parser.add_argument("--patches", type=int, default=400)
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per PATCH")
    parser.add_argument("--per-upload", type=int, default=20, help="PATCHes per upload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-level", default="info", help="log.level (info: an access-log line a request)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-blob-pushes-") as scratch:
        asyncio.run(run(options, Path(scratch)))


if __name__ == "__main__":
    main()
