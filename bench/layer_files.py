"""`python -m bench.layer_files`: the layer browser on a 500 MB layer: time to the first entry and to the
whole listing, a directory at the end of the layer, a file at its end, and the merged tree.

Builds one gzip layer of ~500 MB of tar (200 files of random bytes, 1 MiB each, which do not compress,
then 6,000 text files of ~50 KiB which do, in `a/` ... `z/`, and a last directory `zz/`), pushes it to a
dockyard on loopback (auth off) and reads `/api/v1/.../files` as the portal would, line by line.
Each measurement runs `--rounds` times, interleaved; the machine's load average is printed. The first
listing reads the blob and keeps the layer's index; the later ones say "(index)" when they answer
from it (the merged tree has no such mark: it reads the index too).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import start_dockyard, write_dockyard_config

MIB = 1024 * 1024
RANDOM_FILES, RANDOM_SIZE = 200, MIB
TEXT_FILES, TEXT_SIZE = 6000, 50 * 1024
PASSWORD = "bench-layer-files-1"


def build_layer(out: Path) -> tuple[str, int, int]:
    rng = random.Random(14)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)
    ]
    total = 0
    with gzip.open(out, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w") as tar:  # type: ignore[call-overload]
        for i in range(RANDOM_FILES):
            data = os.urandom(RANDOM_SIZE)
            _add(tar, f"blobs/{i // 50}/random-{i}.bin", data)
            total += len(data)
        for i in range(TEXT_FILES):
            text = b" ".join(rng.choice(words) for _ in range(TEXT_SIZE // 6))[:TEXT_SIZE]
            _add(tar, f"{chr(97 + i % 26)}/{i // 26 % 10}/text-{i}.txt", text)
            total += len(text)
        _add(tar, "zz/last.txt", b"the last file of the layer\n")
    digest = hashlib.sha256()
    with out.open("rb") as data:
        while chunk := data.read(MIB):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}", out.stat().st_size, total


def _described(path: Path) -> tuple[str, int, int]:
    digest = hashlib.sha256()
    tar_bytes = 0
    with path.open("rb") as data:
        while chunk := data.read(MIB):
            digest.update(chunk)
    with tarfile.open(path, "r:gz") as tar:
        tar_bytes = sum(member.size for member in tar)
    return f"sha256:{digest.hexdigest()}", path.stat().st_size, tar_bytes


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
    tar.addfile(info, io.BytesIO(data))


def timed_listing(http: httpx.Client, path: str, params: dict[str, str]) -> tuple[float, float, int, str]:
    """(seconds to the first entry line, seconds to the end line, entries, "index" when answered from
    the layer's index)."""
    started = time.monotonic()
    first = None
    count = 0
    source = ""
    with http.stream("GET", path, params=params) as response:
        if response.is_error:
            response.read()
            raise SystemExit(f"{path}: {response.status_code} {response.text}")
        for line in response.iter_lines():
            item = json.loads(line)
            if "end" in item or "errors" in item:
                assert "end" in item, item
                source = "index" if item["end"].get("cached") else "blob"
                break
            if first is None:
                first = time.monotonic() - started
            count += 1
    return first if first is not None else float("nan"), time.monotonic() - started, count, source


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--layer", type=Path, help="Keep the built layer here and reuse it (building takes minutes)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-layer-files-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        if args.layer is not None and args.layer.exists():
            (workdir / "layer.tar.gz").symlink_to(args.layer.resolve())
            digest, size, tar_bytes = _described(args.layer)
        else:
            digest, size, tar_bytes = build_layer(workdir / "layer.tar.gz")
            if args.layer is not None:
                args.layer.write_bytes((workdir / "layer.tar.gz").read_bytes())
        print(
            f"layer: {tar_bytes / 1e6:.0f} MB of file content, {size / 1e6:.0f} MB gzip "
            f"(built in {time.monotonic() - started:.0f} s)"
        )
        config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers"}}).encode()
        # Auth on, as a portal runs: the caller's pull permission is checked on every request.
        config_path, port = write_dockyard_config(workdir / "server", 1, auth={"enabled": True})
        server = start_dockyard(
            workdir / "server", 1, env={"DOCKYARD_ADMIN_PASSWORD": PASSWORD}, config=(config_path, port)
        )
        try:
            url = f"http://{server.host}:{server.port}"
            with httpx.Client(base_url=url, timeout=600, auth=("admin", PASSWORD)) as http:
                _push(http, workdir, config, digest, size)
                base = f"/api/v1/repositories/bench/files/artifacts/v1/layers/{digest}"
                cases = {
                    "layer /, direct children": (base + "/files", {"path": "/"}),
                    "whole layer, recursive": (base + "/files", {"path": "/", "recursive": "true"}),
                    "layer /zz (the tar's end)": (base + "/files", {"path": "/zz"}),
                    "merged tree /": ("/api/v1/repositories/bench/files/artifacts/v1/files", {"path": "/"}),
                }
                # The management API loads on its first request: not part of any measurement.
                http.get("/api/v1/systeminfo").raise_for_status()
                results: dict[str, list[tuple[float, float, int, str]]] = {name: [] for name in cases}
                downloads = []
                for _ in range(args.rounds):
                    for name, (path, params) in cases.items():
                        results[name].append(timed_listing(http, path, params))
                    began = time.monotonic()
                    body = http.get(base + "/download", params={"path": "/zz/last.txt"})
                    body.raise_for_status()
                    downloads.append(time.monotonic() - began)
        finally:
            server.process.terminate()
            server.process.wait(30)
    print(f"load average: {os.getloadavg()}")
    for name, runs in results.items():
        firsts = ", ".join(f"{r[0]:.3f} ({r[3]})" for r in runs)
        totals = ", ".join(f"{r[1]:.2f}" for r in runs)
        print(f"{name}: {runs[0][2]} entries; first entry {firsts} s; whole listing {totals} s")
    print(f"download of the layer's last file: {', '.join(f'{d:.2f}' for d in downloads)} s")


def _push(http: httpx.Client, workdir: Path, config: bytes, digest: str, size: int) -> None:
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    for data, blob_digest in ((config, config_digest), ((workdir / "layer.tar.gz").open("rb"), digest)):
        start = http.post("/v2/bench/files/blobs/uploads/")
        start.raise_for_status()
        http.put(start.headers["location"], params={"digest": blob_digest}, content=data).raise_for_status()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}
        ],
    }
    put = http.put(
        "/v2/bench/files/manifests/v1",
        content=json.dumps(manifest).encode(),
        headers={"content-type": manifest["mediaType"]},
    )
    put.raise_for_status()


if __name__ == "__main__":
    main()
