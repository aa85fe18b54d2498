"""CPU per /v2 request of a real `dockyard serve` (1 worker): limits off, on (in process), on (Redis).

    .venv/bin/python scripts/bench_limits.py

Counts the CPU time of the server's process tree (/proc) over 3000 `GET /v2/` on one keep-alive
connection, after 300 to warm up. Limits "on" never refuse (a huge budget): every request pays the
check. Run it twice or more: one run on a shared machine is noisy.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.redis import RedisServer
from tests.support.server import start_server

REQUESTS = 3000
TICK = os.sysconf("SC_CLK_TCK")
NEVER_REFUSING = {"address": {"rate": 1e6, "burst": 10**9}}


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(_stat(int(entry))[1])
            except OSError:
                continue
            if parent == pid:
                pids += process_tree(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    return sum(int(_stat(pid)[11]) + int(_stat(pid)[12]) for pid in pids) / TICK


def measure(label: str, config: dict[str, Any]) -> None:
    server = start_server(Path(tempfile.mkdtemp()), {"http": {"workers": 1}, **config})
    try:
        pids = process_tree(server.process.pid)
        with httpx.Client(base_url=server.url) as http:
            for _ in range(300):
                http.get("/v2/")
            before, started = cpu_seconds(pids), time.perf_counter()
            for _ in range(REQUESTS):
                assert http.get("/v2/").status_code == 200
            wall, used = time.perf_counter() - started, cpu_seconds(pids) - before
        cpu, elapsed = used / REQUESTS * 1e6, wall / REQUESTS * 1e6
        print(f"{label:30s} server CPU {cpu:6.0f} us/request, wall {elapsed:6.0f} us")
    finally:
        server.stop()


def main() -> None:
    redis = RedisServer(Path(tempfile.mkdtemp()))
    redis.start()
    try:
        for _ in range(2):
            measure("limits off", {})
            measure("limits on, in process", {"limits": NEVER_REFUSING})
            measure("limits off, redis configured", {"redis": {"url": redis.url}})
            measure("limits on, redis", {"redis": {"url": redis.url}, "limits": NEVER_REFUSING})
    finally:
        redis.kill()


if __name__ == "__main__":
    main()
