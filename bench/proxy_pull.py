"""Pull-through cache speed, side by side (`python -m bench.proxy_pull`): a 64 MiB layer pulled
from Debian's docker-registry directly, through a dockyard proxy project on a miss (streamed while it is
stored), from the cache afterwards, and pushed straight into an ordinary dockyard project. Medians of a
few rounds, as ratios. Issue 11's targets: a first pull through the cache at most 1.3x the direct pull;
a cached pull at least 0.9x the speed of one of pushed content."""

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
from pathlib import Path

import httpx
from tests.support.ociclient import OCIClient
from tests.support.registry2 import running_registry2
from tests.support.server import start_server

SIZE = int(os.environ.get("PROXY_BENCH_MIB", "64")) << 20
ROUNDS = int(os.environ.get("PROXY_BENCH_ROUNDS", "3"))
ADMIN = ("admin", "proxy-bench-admin-password-1")


class Challenged(httpx.Auth):
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and challenge.startswith("Bearer "):
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.pop("realm")
            token = httpx.get(realm, params=params, auth=self.credentials, timeout=10).json()["token"]
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def blob(seed: int) -> bytes:
    block = b"".join(hashlib.sha512(f"{seed}:{i}".encode()).digest() for i in range(1024))  # 64 KiB
    return (block * (SIZE // len(block) + 1))[:SIZE]


def timed_get(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    received = 0
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        for chunk in response.iter_bytes(1 << 20):
            received += len(chunk)
    assert received == SIZE, received
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    config = {"auth": {"enabled": True}, "upstream": {"allowed_networks": ["127.0.0.0/8"]}}
    server = start_server(work / "dockyard", config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
    try:
        with running_registry2(work / "registry2") as upstream:
            api = httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=60)
            api.post(
                "/endpoints", json={"name": "up", "url": upstream, "kind": "registry"}
            ).raise_for_status()
            api.post("/projects", json={"name": "cache", "proxy": {"endpoint": "up"}}).raise_for_status()
            up = httpx.Client(base_url=upstream, timeout=120)
            dock = httpx.Client(base_url=server.url, timeout=120, auth=Challenged(ADMIN))
            digests = []
            for seed in range(ROUNDS):
                data = blob(seed)
                digests.append(OCIClient(up).push_blob("bench/app", data))
                OCIClient(dock).push_blob("plain/app", data)
            direct = [timed_get(up, f"/v2/bench/app/blobs/{d}") for d in digests]
            first = [timed_get(dock, f"/v2/cache/bench/app/blobs/{d}") for d in digests]
            cached = [timed_get(dock, f"/v2/cache/bench/app/blobs/{d}") for d in digests]
            pushed = [timed_get(dock, f"/v2/plain/app/blobs/{d}") for d in digests]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    mib = SIZE >> 20
    rows = {"direct from docker-registry": direct, "first pull through the cache": first,
            "cached pull": cached, "pull of pushed content": pushed}  # fmt: skip
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"{name:32} {median * 1000:8.1f} ms  {mib / median:8.1f} MiB/s")
    ratio = statistics.median(first) / statistics.median(direct)
    print(f"first pull / direct: {ratio:.2f}x the time (target <= 1.3)")
    print(
        f"cached / pushed speed: {statistics.median(pushed) / statistics.median(cached):.2f}x (target >= 0.9)"
    )


if __name__ == "__main__":
    sys.exit(main())
