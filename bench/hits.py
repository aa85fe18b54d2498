"""`python -m bench.hits`: instructions per cache hit of the registry's hot-path reads
(`Registry.cached_manifest` by tag and by digest, `cached_blob_size`), counted by valgrind's callgrind,
so other processes' load does not move them. Each figure is the difference between two runs of the
same process doing `--small` and `--large` hits, divided by the difference: start-up and seeding cancel
out. The worker's own feed (the node's change file, `LocalChangeFeed`), SQLite, one repository.

    python -m bench.hits [--small 20000] [--large 120000]

A benchmark, not a test; it needs valgrind.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.misses import MANIFEST_TYPE, seed
from bench.scalelayout import ScaleImage, repository_name

KINDS = ("manifest by tag", "manifest by digest", "blob size")


def hits(kind: str, count: int, workdir: Path) -> None:
    """Seed, warm the caches, then `count` hits of `kind` (what callgrind counts beside start-up)."""
    from dockyard.app import build_services
    from dockyard.config.settings import Settings

    config: dict[str, Any] = {"datadir": str(workdir / "data"), "auth": {"enabled": False}}
    services = build_services(Settings.model_validate(config))
    image = ScaleImage.build()
    seed(services, image, 2)
    registry = services.registry
    name = repository_name(1)
    digest = registry.get_manifest(name, "latest").digest
    registry.get_manifest(name, digest)
    registry.blob_size(name, image.layer_digest)
    registry.put_manifest(repository_name(0), "other", image.manifest, MANIFEST_TYPE)  # a write elsewhere
    if kind == "manifest by tag":
        get, args = registry.cached_manifest, (name, "latest")
    elif kind == "manifest by digest":
        get, args = registry.cached_manifest, (name, digest)
    else:
        get, args = registry.cached_blob_size, (name, image.layer_digest)
    if get(*args) is None:
        raise RuntimeError(f"{kind}: not cached")
    for _ in range(count):
        get(*args)


def counted(kind: str, count: int) -> int:
    """Instructions callgrind counts for a whole run of `hits(kind, count)`."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += ["-m", "bench.hits", "--inner", kind, "--count", str(count)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hits", description=__doc__)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=120_000)
    parser.add_argument("--only", choices=KINDS)
    parser.add_argument("--inner", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        with tempfile.TemporaryDirectory(prefix="bench-hits-") as scratch:
            hits(options.inner, options.count, Path(scratch))
        return
    for kind in [options.only] if options.only else KINDS:
        small, large = counted(kind, options.small), counted(kind, options.large)
        print(f"{kind}: {(large - small) / (options.large - options.small):.0f} instructions per hit")


if __name__ == "__main__":
    main()
