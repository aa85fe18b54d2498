"""`python -m bench.inventory`: time and peak memory of `dockyard inventory` on a ~200 MB image.

Builds five gzip layers from this machine's real files (Debian's dpkg status and Python's standard
library; the test venv's site-packages, up to 200 MiB; node's global node_modules; Debian's jars; the
seaweedfs Go binary, 150 MB with ~300 modules), pushes them to a dockyard on loopback, then runs
`dockyard inventory --json` as an operator would and reports wall time and the process's peak RSS.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import dockyard_command, start_dockyard, write_dockyard_config

SITE = Path(sys.executable).parents[1] / "lib" / "python3.11" / "site-packages"
WEED = Path(sys.executable).with_name("weed")
PYTHON_BUDGET = 200 * 1024 * 1024


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def layer_sources() -> list[list[tuple[str, Path]]]:
    site = sorted(SITE.iterdir())
    python: list[tuple[str, Path]] = [
        (f"usr/lib/python3/dist-packages/{p.name}", p) for p in site if p.name.endswith(".dist-info")
    ]
    used = 0
    for path in site:
        if path.name.endswith(".dist-info") or not path.is_dir():
            continue
        size = _size(path)
        if used + size <= PYTHON_BUDGET:
            python.append((f"usr/lib/python3/dist-packages/{path.name}", path))
            used += size
    return [
        [
            ("usr/lib/os-release", Path("/usr/lib/os-release")),
            ("var/lib/dpkg/status", Path("/var/lib/dpkg/status")),
            ("usr/lib/python3.11", Path("/usr/lib/python3.11")),
        ],
        python,
        [("usr/lib/node_modules", Path("/usr/lib/node_modules"))],
        [("usr/share/java", Path("/usr/share/java"))],
        [("usr/local/bin/weed", WEED)],
    ]


def build_layer(sources: list[tuple[str, Path]], out: Path) -> tuple[str, int, int]:
    with gzip.open(out, "wb", compresslevel=6) as raw, tarfile.open(fileobj=raw, mode="w") as tar:  # type: ignore[call-overload]
        for name, path in sources:
            tar.add(str(path), arcname=name)
    digest = hashlib.sha256()
    with out.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    uncompressed = sum(_size(path) for _, path in sources)
    return f"sha256:{digest.hexdigest()}", out.stat().st_size, uncompressed


def push_blob(http: httpx.Client, repo: str, path: Path, digest: str) -> None:
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    with path.open("rb") as data:
        done = http.put(start.headers["location"], params={"digest": digest}, content=data)
    done.raise_for_status()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        workdir = Path(tmp)
        layers = []
        for i, sources in enumerate(layer_sources()):
            layers.append((workdir / f"layer{i}.tar.gz", *build_layer(sources, workdir / f"layer{i}.tar.gz")))
        config = json.dumps(
            {"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        config_path, port = write_dockyard_config(workdir / "server", 1)
        server = start_dockyard(workdir / "server", 1, config=(config_path, port))
        try:
            with httpx.Client(base_url=f"http://{server.host}:{server.port}", timeout=600) as http:
                (workdir / "config.json").write_bytes(config)
                config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
                push_blob(http, "bench/inventory", workdir / "config.json", config_digest)
                for path, digest, _, _ in layers:
                    push_blob(http, "bench/inventory", path, digest)
                manifest = {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config_digest,
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digest,
                            "size": size,
                        }
                        for _, digest, size, _ in layers
                    ],
                }
                put = http.put(
                    "/v2/bench/inventory/manifests/big",
                    content=json.dumps(manifest).encode(),
                    headers={"content-type": manifest["mediaType"]},
                )
                put.raise_for_status()
            command = [
                *dockyard_command(None),
                "inventory",
                "--config",
                str(config_path),
                "--json",
                "bench/inventory:big",
            ]
            started = time.monotonic()
            with tempfile.TemporaryFile() as out:
                child = subprocess.Popen(command, stdout=out, env={**os.environ})
                _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS
                child.returncode = os.waitstatus_to_exitcode(status)
                seconds = time.monotonic() - started
                if child.returncode != 0:
                    raise SystemExit(f"dockyard inventory exited with {child.returncode}")
                out.seek(0)
                stdout = out.read().decode()
            peak_kib = usage.ru_maxrss
        finally:
            server.process.terminate()
            server.process.wait(30)
        report = json.loads(stdout)
        [image] = report["images"]
        counts: dict[str, int] = {}
        for package in image["packages"]:
            counts[package["ecosystem"]] = counts.get(package["ecosystem"], 0) + 1
        compressed = sum(size for _, _, size, _ in layers)
        tar_mb = image["bytes_read"] / 1e6
        print(f"image: 5 layers, {compressed / 1e6:.0f} MB compressed, {tar_mb:.0f} MB of tar")
        print(f"`dockyard inventory --json`: {seconds:.1f} s wall (walk {image['seconds']:.1f} s)")
        print(f"peak RSS of that process: {peak_kib / 1024:.0f} MiB")
        print(f"packages: {len(image['packages'])} {counts}")
        print(f"unreadable: {len(image['unreadable'])}, skipped: {len(image['skipped'])}")
        reasons: dict[str, int] = {}
        for item in image["unreadable"] + image["skipped"]:
            key = item.get("format", "skipped") + ": " + item["reason"].split(":")[0][:60]
            reasons[key] = reasons.get(key, 0) + 1
        for key, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"  {count:4d}  {key}")


if __name__ == "__main__":
    main()
