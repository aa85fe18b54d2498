"""`python -m bench.memory`: the memory of `dockyard serve`'s processes, at rest and under load.

The embedded default (SQLite + filesystem, auth on, `http.workers: 2`, so four processes: serve's main
process, two HTTP workers, the job runner) in a temporary directory:

1. at rest (a few seconds after /v2/ answers): each process's Rss and Pss (`/proc/PID/smaps_rollup`);
2. under load, 8 clients at once, each with a token from /token (a password check): push three images
   (1 + 16 + 64 MiB, then twice 1 + 8 MiB layers), pull every blob back, 50 manifest GETs per image,
   catalog and tags list; then 5 management API calls with Basic; then a garbage collection job;
3. after the load: Rss and Pss again, and each process's peak (VmHWM: the most it was resident at any
   time since it started, start-up included).

Rss counts the pages a process shares with others (the workers are forked from the main process, and
every process maps the same libraries) in each of them; Pss splits them among their sharers, so the
sum of Pss is what the tree takes from the machine. No figure is a pass or fail: see docs/benchmarks.md,
"Memory", for the targets. Options: `--dockyard-rev REV` (run `src/` of a commit), `--clients N`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.procs import process_tree
from bench.servers import Server, describe_source, resolve_rev, snapshot_source, start_dockyard

PASSWORD = "memory-bench correct horse 42"
CREDENTIALS = ("admin", PASSWORD)
MIB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ROUNDS = ([1 * MIB, 16 * MIB, 64 * MIB], [1 * MIB, 8 * MIB], [1 * MIB, 8 * MIB])


@dataclass
class Figures:
    pid: int
    name: str
    rss: float  # MiB
    pss: float
    peak: float  # VmHWM


def figures(root: int) -> list[Figures]:
    found = []
    for pid in process_tree(root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        kb = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if line.endswith("kB")}
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        role = _role(pid, root, command, name)
        found.append(Figures(pid, role, kb["Rss"] / 1024, kb["Pss"] / 1024, hwm / 1024))
    workers = sorted(figure.pid for figure in found if figure.name == "HTTP worker")
    for figure in found:
        if figure.name == "HTTP worker":
            figure.name = f"HTTP worker {workers.index(figure.pid) + 1}"
    return sorted(found, key=lambda figure: figure.name)


def _role(pid: int, root: int, command: list[bytes], name: str) -> str:
    if pid == root:
        return "main process"
    # Serve forks its job runner, which has serve's command line then, and names it (cli.job_child).
    return "job runner" if name == "dockyard-jobs" or b"worker" in command else "HTTP worker"


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def client_load(url: str, index: int, errors: list[str]) -> None:
    repo = f"memory/app{index}"
    try:
        scope = f"repository:{repo}:pull,push"
        token = httpx.get(f"{url}/token", params={"service": "dockyard", "scope": scope}, auth=CREDENTIALS)
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
            for number, sizes in enumerate(ROUNDS):
                layers = []
                for size in sizes:
                    layers.append(_push_blob(http, repo, os.urandom(size), OCI_LAYER))
                config = json.dumps(
                    {"os": "linux", "architecture": "amd64", "n": f"{index}-{number}"}
                ).encode()
                manifest = {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": _push_blob(http, repo, config, OCI_CONFIG),
                    "layers": layers,
                }
                body = json.dumps(manifest).encode()
                put = http.put(
                    f"/v2/{repo}/manifests/v{number}", content=body, headers={"Content-Type": OCI_MANIFEST}
                )
                put.raise_for_status()
                for layer in layers:
                    with http.stream("GET", f"/v2/{repo}/blobs/{layer['digest']}") as pulled:
                        pulled.raise_for_status()
                        for _ in pulled.iter_bytes(MIB):
                            pass
                for _ in range(50):
                    http.get(
                        f"/v2/{repo}/manifests/v{number}", headers={"Accept": OCI_MANIFEST}
                    ).raise_for_status()
                http.get(f"/v2/{repo}/tags/list").raise_for_status()
        for _ in range(5):
            httpx.get(f"{url}/api/v1/repositories", auth=CREDENTIALS, timeout=60).raise_for_status()
    except Exception as exc:  # reported, and the run says it had errors
        errors.append(f"client {index}: {exc!r}")


def _push_blob(http: httpx.Client, repo: str, data: bytes, media_type: str) -> dict[str, object]:
    descriptor = _descriptor(media_type, data)
    started = http.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    started.raise_for_status()
    location = http.base_url.join(started.headers["Location"]).copy_merge_params(
        {"digest": descriptor["digest"]}
    )
    http.put(location, content=data, headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return descriptor


def collect_garbage(url: str) -> None:
    """A GC job (nothing is old enough to delete: the job runner still marks and sweeps everything)."""
    created = httpx.post(
        f"{url}/api/v1/jobs", json={"kind": "gc", "params": {}}, auth=CREDENTIALS, timeout=60
    )
    created.raise_for_status()
    job = created.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/v1/jobs/{job}", auth=CREDENTIALS, timeout=60).json()["status"]
        if status not in ("queued", "running"):
            return
        time.sleep(0.5)


def table(title: str, rows: list[Figures], with_peak: bool) -> str:
    lines = [f"{title}", "", "| process | Rss MiB | Pss MiB |" + (" peak (VmHWM) MiB |" if with_peak else "")]
    lines.append("|---|--:|--:|" + ("--:|" if with_peak else ""))
    for row in rows:
        peak = f" {row.peak:.1f} |" if with_peak else ""
        lines.append(f"| {row.name} | {row.rss:.1f} | {row.pss:.1f} |{peak}")
    total_peak = f" {sum(row.peak for row in rows):.1f} (sum) |" if with_peak else ""
    lines.append(
        f"| **total** | {sum(r.rss for r in rows):.1f} | {sum(r.pss for r in rows):.1f} |{total_peak}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--dockyard-rev", help="run src/ of this commit (git archive), not the working tree")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds at rest before measuring")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dockyard-memory-") as temp:
        workdir = Path(temp)
        source = None
        if args.dockyard_rev:
            source = snapshot_source(resolve_rev(args.dockyard_rev), workdir / "source")
        server: Server = start_dockyard(
            workdir / "server", workers=2, source=source, auth={}, env={"DOCKYARD_ADMIN_PASSWORD": PASSWORD}
        )
        try:
            time.sleep(args.settle)
            setup = "2 HTTP workers, SQLite + filesystem, auth on"
            print(f"dockyard: {describe_source(args.dockyard_rev)}; {setup}\n")
            print(table("At rest:", figures(server.process.pid), with_peak=False) + "\n")
            errors: list[str] = []
            clients = [
                threading.Thread(target=client_load, args=(server.url, index, errors))
                for index in range(args.clients)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            collect_garbage(server.url)
            time.sleep(2)
            print(
                table(
                    f"After the load ({args.clients} clients) and a GC job:",
                    figures(server.process.pid),
                    True,
                )
            )
            print(f"\nload average at the end: {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
            if errors:
                print("\nerrors:\n" + "\n".join(errors))
            return 1 if errors else 0
        finally:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
