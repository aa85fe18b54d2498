"""`python -m bench.cached_reads`: what one cached small read costs the server in-process, the two rows of
issue 10 that were under 3x v3.1.1: a blob HEAD and a manifest GET by tag, both cache hits, through the
whole ASGI app as a worker builds it (`build_services` + `create_app`, logging configured as a worker
does), driven on one event loop without sockets or an HTTP client, with the headers the bench's load
tools send (ab for the HEAD, wrk with the manifest Accept for the GET).

The auth modes (`--auth`, several at once):
- `open`: auth off, log level warn, no access log: how `python -m bench` runs dockyard (its rows);
- `anonymous`: dockyard's own auth, an anonymous pull token for a public project (`public/app`);
- `basic`: dockyard's own auth, Basic credentials of a guest of `bench/app` (remembered after the first);
- `bearer`: the same user's pull token for `bench/app` (what docker sends after /token).

Two figures per row:
- µs of CPU per request: `time.process_time()` of the whole process (its threads too) over `--requests`,
  per round, the median of `--rounds`; moved by other processes' load less than wall time, not immune;
- with `--callgrind`: instructions per request, counted by valgrind's callgrind on two runs of the same
  process doing `--small` and `--large` requests, their difference over the difference (start-up and
  seeding cancel out): what the load of other processes does not move.

    python -m bench.cached_reads [--auth open,anonymous,basic,bearer] [--only head|get]
                                 [--requests 20000] [--rounds 4] [--access-log] [--loop uvloop|asyncio]
                                 [--callgrind [--small 2000] [--large 12000]] [--profile FILE]

`--profile FILE`: cProfile (process CPU time) of one round of the first row, pstats into FILE and its
top printed. `--loop`: the event loop the app runs on, uvloop by default as in `dockyard serve`'s workers
(figures in docs/benchmarks.md before 2026-12-07's "The HTTP workers' event loop" ran on asyncio's). A
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.asgi import Headers, Lifespan, http_scope
from bench.scalelayout import ScaleImage
from bench.seed import MANIFEST_ACCEPT

MODES = ("open", "anonymous", "basic", "bearer")
KINDS = ("head", "get")
PASSWORD = "bench-admin-password-7Qk2"
USER, USER_PASSWORD = "bench-puller", "quartz-lantern-harbor-41"
PRIVATE_REPO, PUBLIC_REPO = "bench/app", "public/app"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
# What ab (`ab -k -i`, the HEAD rows) and wrk (the GET rows) send besides Host.
AB_HEADERS: Headers = [
    (b"user-agent", b"ApacheBench/2.3"),
    (b"accept", b"*/*"),
    (b"connection", b"Keep-Alive"),
]
WRK_HEADERS: Headers = [(b"accept", MANIFEST_ACCEPT.encode())]


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes


async def call(
    app: Any,
    method: str,
    path: str,
    headers: Headers,
    body: bytes = b"",
    query: bytes = b"",
    keep: bool = True,
) -> Answer:
    """One request as Granian hands it to the app (no content-length where the tools send none); the
    answer, its body if `keep`."""
    scope = http_scope(method, path, [(b"host", b"127.0.0.1:5000"), *headers], query)
    answer = Answer(0, [], b"")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body" and keep:
            answer.body += message.get("body", b"")

    await app(scope, receive, send)
    return answer


def basic(username: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


def seed_repository(services: Any, image: ScaleImage, name: str) -> None:
    for blob in (image.config, image.layer):
        state = services.blob_uploads.start(name)
        append = services.uploads.begin_append(state)
        append.write(blob)
        services.blob_uploads.commit(append.finish(), image.digest_of(blob))
    services.registry.put_manifest(name, "latest", image.manifest, MANIFEST_TYPE)


class Rig:
    """The app for one auth mode, seeded, started, and the request each kind sends."""

    def __init__(self, mode: str, workdir: Path, access_log: bool) -> None:
        self.mode = mode
        self.workdir = workdir
        self.access_log = access_log
        self.image = ScaleImage.build()
        self.app: Any = None
        self.life: Lifespan | None = None
        self.authorization: bytes | None = None

    async def start(self) -> None:
        from dockyard.app import build_services, create_app
        from dockyard.bootstrap import first_admin
        from dockyard.config.settings import Settings
        from dockyard.observability.logging import configure_logging

        config: dict[str, Any] = {
            "datadir": str(self.workdir / "data"),
            "jobs": {"run_in_serve": False},
            "log": {"level": "warn", "accesslog": {"disabled": not self.access_log}},
        }
        if self.access_log:
            config["log"]["level"] = "info"
        if self.mode == "open":
            config["auth"] = {"enabled": False}
        settings = Settings.model_validate(config)
        configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)  # as a worker
        services = build_services(settings)
        if self.mode != "open":
            first_admin(settings, services.db, PASSWORD)
        self.app = create_app(services)
        self.life = Lifespan(self.app)
        await self.life.startup()
        if self.mode == "open":
            seed_repository(services, self.image, PRIVATE_REPO)
            return
        admin = [(b"authorization", basic("admin", PASSWORD)), (b"content-type", b"application/json")]
        for body in (
            {"name": "bench"},
            {"name": "public", "public": True},
        ):
            await self._expect(201, "POST", "/api/v1/projects", admin, body)
        await self._expect(201, "POST", "/api/v1/users", admin, {"username": USER, "password": USER_PASSWORD})
        member = {"user": USER, "role": "guest"}
        await self._expect(201, "POST", "/api/v1/projects/bench/members", admin, member)
        seed_repository(services, self.image, PRIVATE_REPO)
        seed_repository(services, self.image, PUBLIC_REPO)
        if self.mode == "basic":
            self.authorization = basic(USER, USER_PASSWORD)
        elif self.mode == "bearer":
            self.authorization = b"Bearer " + await self._token(
                PRIVATE_REPO, [(b"authorization", basic(USER, USER_PASSWORD))]
            )
        else:
            self.authorization = b"Bearer " + await self._token(PUBLIC_REPO, [])

    async def _expect(self, status: int, method: str, path: str, headers: Headers, body: object) -> None:
        answer = await call(self.app, method, path, headers, json.dumps(body).encode())
        if answer.status not in (status, 200):
            raise RuntimeError(f"{method} {path}: {answer.status} {answer.body[:300]!r}")

    async def _token(self, repository: str, headers: Headers) -> bytes:
        query = f"service=dockyard&scope=repository:{repository}:pull".encode()
        answer = await call(self.app, "GET", "/token", headers, query=query)
        if answer.status != 200:
            raise RuntimeError(f"/token: {answer.status} {answer.body[:300]!r}")
        return str(json.loads(answer.body)["token"]).encode()

    def request(self, kind: str) -> tuple[str, str, Headers]:
        repository = PUBLIC_REPO if self.mode == "anonymous" else PRIVATE_REPO
        credentials: Headers = [] if self.authorization is None else [(b"authorization", self.authorization)]
        if kind == "head":
            return "HEAD", f"/v2/{repository}/blobs/{self.image.layer_digest}", [*AB_HEADERS, *credentials]
        return "GET", f"/v2/{repository}/manifests/latest", [*WRK_HEADERS, *credentials]

    async def run(self, kind: str, count: int) -> float:
        """`count` requests of `kind`; µs of CPU per request."""
        method, path, headers = self.request(kind)
        cpu = time.process_time()
        for _ in range(count):
            answer = await call(self.app, method, path, headers, keep=False)
            if answer.status != 200:
                raise RuntimeError(f"{self.mode} {method} {path}: {answer.status}")
        return (time.process_time() - cpu) / count * 1e6

    async def stop(self) -> None:
        if self.life is not None:
            await self.life.shutdown()


async def inner(mode: str, kind: str, count: int, access_log: bool) -> None:
    """What callgrind counts: start, warm up, `count` requests."""
    with tempfile.TemporaryDirectory(prefix="bench-cached-reads-") as scratch:
        rig = Rig(mode, Path(scratch), access_log)
        await rig.start()
        await rig.run(kind, 200)
        await rig.run(kind, count)
        await rig.stop()


def counted(mode: str, kind: str, count: int, access_log: bool, loop: str) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += ["-m", "bench.cached_reads", "--inner", f"{mode}:{kind}", "--count", str(count)]
    command += ["--access-log"] if access_log else []
    command += ["--loop", loop]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(done.stderr[-3000:])
    return int(found.group(1))


LABELS = {"head": "blob HEAD", "get": "manifest GET by tag"}
LOOPS = ("uvloop", "asyncio")


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """`main` on a new event loop of the kind `loop` names."""
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


async def measure(options: argparse.Namespace, workdir: Path) -> None:
    profile_done = False
    for mode in options.auth:
        rig = Rig(mode, workdir / mode, options.access_log)
        await rig.start()
        rounds: dict[str, list[float]] = {kind: [] for kind in options.only}
        for kind in options.only:
            await rig.run(kind, 500)  # warm: caches filled, statements compiled, the login remembered
        for _ in range(options.rounds):
            for kind in options.only:  # the kinds alternate
                rounds[kind].append(await rig.run(kind, options.requests))
        if options.profile and not profile_done:
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await rig.run(options.only[0], options.requests)
            profiler.disable()
            profiler.dump_stats(options.profile)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            profile_done = True
        await rig.stop()
        log = " access-log" if options.access_log else ""
        for kind, figures in rounds.items():
            shown = [round(figure, 1) for figure in figures]
            median = statistics.median(figures)
            print(f"{mode}{log} {LABELS[kind]}: CPU µs/request median {median:.1f} (rounds {shown})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cached_reads", description=__doc__)
    parser.add_argument("--auth", default="open", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--only", choices=KINDS, help="one kind of request only")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--access-log", action="store_true", help="log.level info and the access log on")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="the event loop (serve's: uvloop)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request (valgrind)")
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=12_000)
    parser.add_argument("--profile", metavar="FILE", help="cProfile one round of the first row into FILE")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        mode, kind = options.inner.split(":")
        run_on(options.loop, inner(mode, kind, options.count, options.access_log))
        return
    options.auth = [mode.strip() for mode in options.auth.split(",")]
    if unknown := set(options.auth) - set(MODES):
        parser.error(f"unknown --auth {sorted(unknown)}")
    options.only = [options.only] if options.only else list(KINDS)
    if options.callgrind:
        log = " access-log" if options.access_log else ""
        for mode in options.auth:
            for kind in options.only:
                small = counted(mode, kind, options.small, options.access_log, options.loop)
                large = counted(mode, kind, options.large, options.access_log, options.loop)
                per = (large - small) / (options.large - options.small)
                print(f"{mode}{log} {LABELS[kind]}: {per:,.0f} instructions per request", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-cached-reads-") as scratch:
        run_on(options.loop, measure(options, Path(scratch)))


if __name__ == "__main__":
    main()
