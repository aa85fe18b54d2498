"""A small real filesystem for full-disk tests: a tmpfs of a given size, mounted under the test's tmp dir
and unmounted after. Mounting needs root (the tests run as root); anything else is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

FILL_CHUNK = 1 << 16


@contextlib.contextmanager
def small_filesystem(path: Path, size: str, options: str = "") -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "24m") at `path` (created if needed) for the block."""
    if os.geteuid() != 0:
        raise RuntimeError("full-disk tests mount a tmpfs: run them as root")
    path.mkdir(parents=True, exist_ok=True)
    mount_options = f"size={size}" + (f",{options}" if options else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", mount_options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            # Still busy (a process the test started did not stop): detach it rather than leave it.
            subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(path: Path) -> int:
    """Write `path` until its filesystem is full; returns the bytes written. The file stays (delete it
    to free the space)."""
    written = 0
    chunk = b"\xa5" * FILL_CHUNK
    with open(path, "wb", buffering=0) as file:
        while True:
            try:
                written += file.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        # Whatever smaller piece still fits, down to one byte: the disk is then full to the block.
        size = FILL_CHUNK // 2
        while size >= 1:
            try:
                written += file.write(b"\xa5" * size) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    return written


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
