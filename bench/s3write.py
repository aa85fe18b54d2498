"""`python -m bench.s3write`: the S3 driver's write and read speed on a throwaway SeaweedFS.

Writes blobs of the given sizes through `S3Driver.writer` in 1 MiB writes (as the upload API feeds it),
commits, reads them back, and prints MiB/s. `--concurrency` sets the parts in flight per writer (1 is
the serial upload). To measure an older driver, put its `src/` first on PYTHONPATH. The store runs on
the same machine, so the figures are this machine's, not S3's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs

from dockyard.storage.driver.s3 import S3Driver

MIB = 1 << 20
WRITE_SIZE = MIB


def make_driver(store: RunningSeaweedFS, concurrency: int | None) -> S3Driver:
    # No option given: the driver's default (and this script runs on older drivers without it too).
    options: dict[str, Any] = {} if concurrency is None else {"part_concurrency": concurrency}
    return S3Driver(
        store.bucket,
        endpoint_url=store.endpoint,
        access_key=store.access_key,
        secret_key=store.secret_key,
        rootdirectory=f"s3write/{secrets.token_hex(4)}",
        force_path_style=True,
        **options,
    )


def write_and_read(driver: S3Driver, data: memoryview) -> tuple[float, float]:
    """MiB/s of one write (commit included) and one full read of data."""
    size_mib = len(data) / MIB
    started = time.perf_counter()
    writer = driver.writer("blob/data")
    for start in range(0, len(data), WRITE_SIZE):
        writer.write(bytes(data[start : start + WRITE_SIZE]))
    writer.commit()
    written = time.perf_counter()
    received = 0
    with driver.open_read("blob/data") as stream:
        while chunk := stream.read(MIB):
            received += len(chunk)
    read = time.perf_counter()
    if received != len(data):
        raise RuntimeError(f"read {received} bytes back, wrote {len(data)}")
    driver.delete("blob")
    return size_mib / (written - started), size_mib / (read - written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.s3write", description=__doc__)
    parser.add_argument("--sizes", default="64,256", help="blob sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="parts in flight per writer (repeatable; default: the driver's default)",
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="dockyard-s3write-") as workdir:
        store = start_seaweedfs(Path(workdir))
        try:
            for concurrency in args.concurrency or [None]:
                driver = make_driver(store, concurrency)
                for size in sizes:
                    data = memoryview(os.urandom(size * MIB))
                    rates = [write_and_read(driver, data) for _ in range(args.rounds)]
                    write = statistics.median(rate[0] for rate in rates)
                    read = statistics.median(rate[1] for rate in rates)
                    label = "default" if concurrency is None else str(concurrency)
                    print(
                        f"{size:>4} MiB  concurrency {label:>7}: write {write:6.0f} MiB/s, "
                        f"read {read:6.0f} MiB/s (median of {args.rounds}; all: "
                        + ", ".join(f"{w:.0f}/{r:.0f}" for w, r in rates)
                        + ")",
                        flush=True,
                    )
        finally:
            store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
