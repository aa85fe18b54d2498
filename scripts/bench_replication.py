"""Replicating N images of 5 layers from a real `dockyard serve` to Debian's docker-registry on loopback:
a push policy run (`replicate` job) against `skopeo sync` of the same repositories, each into a fresh
registry, side by side; then a second run (nothing to copy).

    .venv/bin/python scripts/bench_replication.py [IMAGES] [LAYER_KIB]

Images are spread over 10 repositories (IMAGES/10 tags each), every layer distinct (LAYER_KIB KiB,
default 256), so both copy the same bytes. skopeo runs once per repository (it syncs one repository
per source argument), sequentially; dockyard's run is one job.

Besides the times it prints what each copy cost the destination, from its access log and /proc: the
requests by kind, per image, and the destination's CPU; for dockyard also its job runner's CPU (the
process that copies), for skopeo its processes' (children of this one); and where the replicate job's
time went, from its record (queued, claimed, its log lines, finished).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    bearer_client,
    descriptor,
    image_manifest,
)
from tests.support.registry2 import running_registry2
from tests.support.server import start_server

ADMIN = ("admin", "bench-replication-admin-password")
REPOSITORIES = 10
# A line of distribution's access log (gorilla's combined format): the request line and the status.
ACCESS = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) ')
TICK = os.sysconf("SC_CLK_TCK")
JOB_RUNNER = "dockyard-jobs"  # serve's job runner's name (prctl), forked or started afresh


def request_kind(method: str, path: str, status: str) -> str:
    """What a request to the destination was: `HEAD blob 404`, `POST upload?digest 201`, ..."""
    path, _, query = path.partition("?")
    params = {part.split("=", 1)[0] for part in query.split("&") if part}
    if path == "/v2/":
        what = "ping"
    elif "/blobs/uploads/" in path:
        what = "upload" if path.endswith("/uploads/") else "upload/<id>"
        if "mount" in params:
            what += "?mount"
        elif "digest" in params:
            what += "?digest"
    elif "/blobs/" in path:
        what = "blob"
    elif "/manifests/" in path:
        what = "manifest"
    else:
        what = path.rsplit("/", 2)[-2] if path.count("/") > 2 else path
    return f"{method} {what} {status}"


def access_counts(log: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if found := ACCESS.search(line):
            counts[request_kind(*found.groups())] += 1
    return counts


def cpu_of(match: str, session: int | None = None) -> float:
    """User+system CPU seconds of the live processes whose command line or name (`comm`) holds `match`
    (in `session`: other dockyard servers on the machine run job runners too)."""
    total = 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            names = (entry / "cmdline").read_bytes() + b"\0" + (entry / "comm").read_bytes()
            if match not in names.decode(errors="replace"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if session is None or int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def report(name: str, images: int, counts: Counter[str], cpu: dict[str, float]) -> None:
    total = sum(counts.values())
    print(f"{name}: {total} requests to the destination ({total / images:.1f} per image)")
    for kind, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"    {kind:34} {count:6d} ({count / images:.2f} per image)")
    print("    CPU: " + ", ".join(f"{who} {seconds:.2f} s ({seconds / images * 1000:.1f} ms per image)"
                                   for who, seconds in cpu.items()))  # fmt: skip


def push_all(url: str, images: int, layer_kib: int) -> list[str]:
    repositories = [f"bench/r{n}" for n in range(REPOSITORIES)]
    with bearer_client(url, ADMIN, tuple(repositories)) as http:
        client = OCIClient(http)
        for n in range(images):
            repository = repositories[n % REPOSITORIES]
            config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
            layers = []
            for k in range(5):
                block = hashlib.sha256(f"{n}/{k}".encode()).digest()
                layers.append((block * (layer_kib * 1024 // 32 + 1))[: layer_kib * 1024])
            for blob in (config, *layers):
                client.push_blob(repository, blob)
            body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, b) for b in layers])
            client.push_manifest(repository, f"t{n // REPOSITORIES}", body, OCI_MANIFEST)
    return repositories


def run_policy(api: httpx.Client, name: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    job_id = api.post(f"/replication/policies/{name}/run").json()["job_id"]
    while (job := api.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert job["status"] == "succeeded", job
    return elapsed, job


def timeline(job: dict[str, Any]) -> str:
    """Where the job's time went, from its record: queued -> claimed -> the run's first and last log
    lines -> finished (ms from the one before)."""
    points = [("claimed", job["started_at"]), *(("log", line["time"]) for line in job["logs"])]
    points.append(("finished", job["finished_at"]))
    last = datetime.fromisoformat(job["created_at"])
    said = []
    for what, at in points:
        when = datetime.fromisoformat(at)
        said.append(f"{what} +{(when - last).total_seconds() * 1000:.0f}")
        last = when
    return ", ".join(said)


def main() -> None:
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    layer_kib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        config = {
            "auth": {"enabled": True},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},
            # serve's own job runner at its default poll (2 s): the run's job, queued over the API,
            # wakes it through the change feed at once.
            "jobs": {"run_in_serve": True},
            "log": {"level": "warning"},
        }
        server = start_server(root / "dockyard", config, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]})
        try:
            repositories = push_all(server.url, images, layer_kib)
            host = server.url.removeprefix("http://")
            with running_registry2(root / "r2-a") as target_a, running_registry2(root / "r2-b") as target_b:
                with httpx.Client(base_url=server.url + "/api/v1", auth=ADMIN, timeout=60) as api:
                    api.post("/endpoints", json={"name": "a", "url": target_a}).raise_for_status()
                    policy = {
                        "name": "bench",
                        "direction": "push",
                        "endpoint": "a",
                        "repositories": "bench/**",
                    }
                    api.post("/replication/policies", json=policy).raise_for_status()
                    session = server.process.pid  # serve leads a session of its own
                    runner, destination = cpu_of(JOB_RUNNER, session), cpu_of(str(root / "r2-a"))
                    first, job = run_policy(api, "bench")
                    counters = job["result"]
                    dockyard_cpu = {
                        "destination": cpu_of(str(root / "r2-a")) - destination,
                        "job runner": cpu_of(JOB_RUNNER, session) - runner,
                    }
                    dockyard_counts = access_counts(root / "r2-a" / "registry2.log")
                    again, _ = run_policy(api, "bench")
                destination, own = cpu_of(str(root / "r2-b")), children_cpu()
                started = time.monotonic()
                for repository in repositories:
                    done = subprocess.run(
                        ["skopeo", "sync", "--all", "--src", "docker", "--dest", "docker",
                         "--src-tls-verify=false", "--dest-tls-verify=false",
                         "--src-creds", f"{ADMIN[0]}:{ADMIN[1]}",
                         f"{host}/{repository}", f"{target_b.removeprefix('http://')}/{repository.split('/')[0]}"],
                        check=False, capture_output=True, text=True,
                    )  # fmt: skip
                    assert done.returncode == 0, done.stderr
                skopeo = time.monotonic() - started
                skopeo_cpu = {
                    "destination": cpu_of(str(root / "r2-b")) - destination,
                    "skopeo": children_cpu() - own,
                }
                skopeo_counts = access_counts(root / "r2-b" / "registry2.log")
        finally:
            server.stop()
    size = images * 5 * layer_kib / 1024
    print(f"{images} images x 5 layers of {layer_kib} KiB ({size:.0f} MiB), {REPOSITORIES} repositories")
    print(f"dockyard replicate: {first:.2f} s ({images / first:.1f} images/s); copied {counters}")
    print(f"    job (ms after the previous point): {timeline(job)}")
    print(f"dockyard again:     {again:.2f} s (nothing to copy)")
    print(f"skopeo sync:        {skopeo:.2f} s ({images / skopeo:.1f} images/s)")
    print(f"ratio (skopeo / dockyard): {skopeo / first:.2f}x")
    report("dockyard replicate", images, dockyard_counts, dockyard_cpu)
    report("skopeo sync", images, skopeo_counts, skopeo_cpu)


if __name__ == "__main__":
    main()
