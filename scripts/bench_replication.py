"""Replicating N images of 5 layers from a real `dockyard serve` to Debian's docker-registry on loopback:
a push policy run (`replicate` job) against `skopeo sync` of the same repositories, each into a fresh
registry, side by side; then a second run (nothing to copy).

    .venv/bin/python scripts/bench_replication.py [IMAGES] [LAYER_KIB]

Images are spread over 10 repositories (IMAGES/10 tags each), every layer distinct (LAYER_KIB KiB,
default 256), so both copy the same bytes. skopeo runs once per repository (it syncs one repository
per source argument), sequentially; dockyard's run is one job.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run_policy(api: httpx.Client, name: str) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    job_id = api.post(f"/replication/policies/{name}/run").json()["job_id"]
    while (job := api.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert job["status"] == "succeeded", job
    return elapsed, job["result"]


def main() -> None:
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    layer_kib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        config = {
            "auth": {"enabled": True},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},
            "jobs": {"run_in_serve": True, "poll_interval": "100ms"},
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
                    first, counters = run_policy(api, "bench")
                    again, _ = run_policy(api, "bench")
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
        finally:
            server.stop()
    size = images * 5 * layer_kib / 1024
    print(f"{images} images x 5 layers of {layer_kib} KiB ({size:.0f} MiB), {REPOSITORIES} repositories")
    print(f"dockyard replicate: {first:.2f} s ({images / first:.1f} images/s); copied {counters}")
    print(f"dockyard again:     {again:.2f} s (nothing to copy)")
    print(f"skopeo sync:        {skopeo:.2f} s ({images / skopeo:.1f} images/s)")
    print(f"ratio (skopeo / dockyard): {skopeo / first:.2f}x")


if __name__ == "__main__":
    main()
