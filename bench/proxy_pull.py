"""Pull-through cache speed, side by side (`python -m bench.proxy_pull`): a 64 MiB layer pulled
from Debian's docker-registry directly, through a dockyard proxy project on a miss (streamed while it is
stored), from the cache afterwards, and pushed straight into an ordinary dockyard project. Issue 11's
targets: a first pull through the cache at most 1.3x the direct pull; a cached pull at least 0.9x the
speed of one of pushed content.

Each round pulls a new blob the four ways one after the other (direct, first, cached, pushed; the pushed
blob has other bytes of the same size, so that it is not the file the cached pull just read), so a
burst of load elsewhere on the machine hits both sides of a ratio alike; each round prints its ratios,
the load average, and the CPU the dockyard server's processes spent on each pull (from /proc: what a
loaded machine cannot hide). Then the medians of the per-round ratios. Rounds: PROXY_BENCH_ROUNDS
(default 5); size: PROXY_BENCH_MIB (default 64).

`--upstream-mbit N` (or PROXY_BENCH_UPSTREAM_MBIT) puts the upstream behind a link of N megabits per
second (bench/throttle.py), for both the direct pull and the cache's fetches: what a pull from a
registry across a network takes, where on loopback the upstream answers at memory speed and the
first pull's ratio measures the 2 cores (docs/proxy.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.support.ociclient import OCIClient
from tests.support.registry2 import running_registry2
from tests.support.server import start_server

from bench.procs import tree_cpu_seconds
from bench.throttle import throttled

SIZE = int(os.environ.get("PROXY_BENCH_MIB", "64")) << 20
ROUNDS = int(os.environ.get("PROXY_BENCH_ROUNDS", "5"))
UPSTREAM_MBIT = float(os.environ.get("PROXY_BENCH_UPSTREAM_MBIT", "0"))
ADMIN = ("admin", "proxy-bench-admin-password-1")


class Challenged(httpx.Auth):
    """docker's way with a token: asked for on a 401, then sent up front with every request of the
    same repository until it fails (each pull would otherwise pay a 401 and a /token round trip that
    the direct pull from an open docker-registry does not)."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.tokens: dict[str, str] = {}  # repository -> Authorization header

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        repository = request.url.path.split("/blobs/")[0]
        if repository in self.tokens:
            request.headers["Authorization"] = self.tokens[repository]
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and challenge.startswith("Bearer "):
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.pop("realm")
            token = httpx.get(realm, params=params, auth=self.credentials, timeout=10).json()["token"]
            request.headers["Authorization"] = self.tokens[repository] = f"Bearer {token}"
            yield request


def blob(seed: int) -> bytes:
    block = b"".join(hashlib.sha512(f"{seed}:{i}".encode()).digest() for i in range(1024))  # 64 KiB
    return (block * (SIZE // len(block) + 1))[:SIZE]


def timed_get(client: httpx.Client, url: str, server_pid: int) -> tuple[float, float]:
    """Seconds to receive the whole blob, and the server's CPU seconds meanwhile."""
    cpu = tree_cpu_seconds(server_pid)
    started = time.perf_counter()
    received = 0
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        for chunk in response.iter_bytes(1 << 20):
            received += len(chunk)
    assert received == SIZE, received
    elapsed = time.perf_counter() - started
    time.sleep(0.2)  # a first pull's commit may still run after the client has every byte
    return elapsed, tree_cpu_seconds(server_pid) - cpu


KINDS = ("direct", "first", "cached", "pushed")


def main() -> None:
    mbit = UPSTREAM_MBIT
    if "--upstream-mbit" in sys.argv:
        mbit = float(sys.argv[sys.argv.index("--upstream-mbit") + 1])
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    config = {"auth": {"enabled": True}, "upstream": {"allowed_networks": ["127.0.0.0/8"]}}
    server = start_server(work / "dockyard", config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    pid = server.process.pid
    rounds: list[dict[str, tuple[float, float]]] = []
    loads: list[float] = []
    try:
        with running_registry2(work / "registry2") as registry2, upstream_link(registry2, mbit) as upstream:
            api = httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=60)
            api.post(
                "/endpoints", json={"name": "up", "url": upstream, "kind": "registry"}
            ).raise_for_status()
            api.post("/projects", json={"name": "cache", "proxy": {"endpoint": "up"}}).raise_for_status()
            up = httpx.Client(base_url=upstream, timeout=120)
            dock = httpx.Client(base_url=server.url, timeout=120, auth=Challenged(ADMIN))
            digests, pushed = [], []
            for seed in range(ROUNDS):
                digests.append(OCIClient(up).push_blob("bench/app", blob(seed)))
                # Other bytes of the same size: the same bytes would be the same file (content
                # addressed), read from disk by the cached pull and then from the page cache by this one.
                pushed.append(OCIClient(dock).push_blob("plain/app", blob(ROUNDS + seed)))
            dock.head("/v2/plain/app/blobs/" + pushed[0]).raise_for_status()  # tokens, a connection
            dock.head("/v2/cache/bench/app/blobs/" + digests[0]).raise_for_status()
            urls = {
                "direct": (up, "/v2/bench/app/blobs/{}"),
                "first": (dock, "/v2/cache/bench/app/blobs/{}"),
                "cached": (dock, "/v2/cache/bench/app/blobs/{}"),
                "pushed": (dock, "/v2/plain/app/blobs/{}"),
            }
            for digest, own in zip(digests, pushed, strict=True):
                loads.append(os.getloadavg()[0])
                names = {kind: own if kind == "pushed" else digest for kind in urls}
                rounds.append({k: timed_get(c, u.format(names[k]), pid) for k, (c, u) in urls.items()})
                report_round(len(rounds), loads[-1], rounds[-1])
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if mbit:
        print(f"upstream behind a link of {mbit:g} Mbit/s (bench/throttle.py)")
    report(rounds, loads)


@contextmanager
def upstream_link(url: str, mbit: float) -> Iterator[str]:
    if not mbit:
        yield url
        return
    with throttled(url, mbit) as relay:
        yield relay


def report_round(number: int, load: float, times: dict[str, tuple[float, float]]) -> None:
    wall = "  ".join(f"{k} {times[k][0] * 1000:6.1f} ms" for k in KINDS)
    cpu = "  ".join(f"{k} {times[k][1] * 1000:4.0f}" for k in KINDS[1:])
    first, cached = times["first"][0] / times["direct"][0], times["pushed"][0] / times["cached"][0]
    print(f"round {number} (load {load:5.2f}): {wall}")
    print(f"  first/direct {first:.2f}x, cached/pushed speed {cached:.2f}x; server CPU ms: {cpu}")


def report(rounds: list[dict[str, tuple[float, float]]], loads: list[float]) -> None:
    mib = SIZE >> 20
    print(f"medians of {len(rounds)} rounds, load average {min(loads):.2f}-{max(loads):.2f}:")
    for kind in KINDS:
        wall = statistics.median(r[kind][0] for r in rounds)
        cpu = statistics.median(r[kind][1] for r in rounds)
        server = "" if kind == "direct" else f"  server CPU {cpu * 1000:5.0f} ms"
        print(f"{kind:8} {wall * 1000:8.1f} ms  {mib / wall:8.1f} MiB/s{server}")
    first = statistics.median(r["first"][0] / r["direct"][0] for r in rounds)
    cached = statistics.median(r["pushed"][0] / r["cached"][0] for r in rounds)
    print(f"first pull / direct: {first:.2f}x the time (target <= 1.3)")
    print(f"cached / pushed speed: {cached:.2f}x (target >= 0.9)")


if __name__ == "__main__":
    sys.exit(main())
