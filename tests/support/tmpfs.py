"""A small real filesystem for full-disk tests: a tmpfs of a given size, mounted under the test's tmp dir
and unmounted after. Mounting needs root (the tests run as root); anything else is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.support.postgres import migrated_template

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


@contextlib.contextmanager
def database_on_small_filesystem(
    postgres_server_url: str | None, tmp_path: Path, size: str
) -> Iterator[tuple[str, Path]]:
    """A migrated database whose data lives on a small tmpfs: a SQLite file, or (given a PostgreSQL
    server's admin URL) a database in a tablespace there. Yields its URL and the mount point."""
    if postgres_server_url is None:
        with small_filesystem(tmp_path / "db-disk", size) as mount:
            yield f"sqlite:///{mount / 'dockyard.db'}", mount
        return
    postgres = pwd.getpwnam("postgres")
    # The server runs as `postgres`, which cannot enter pytest's root-only tmp dirs: a dir of its own.
    mount = Path(tempfile.mkdtemp(prefix="dockyard-full-"))
    owner = f"uid={postgres.pw_uid},gid={postgres.pw_gid},mode=0700"
    name = f"full_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with small_filesystem(mount, size, owner):
            template = migrated_template(postgres_server_url)
            with admin.connect() as connection:
                connection.exec_driver_sql(f"CREATE TABLESPACE {name} LOCATION '{mount}'")
                connection.exec_driver_sql(f'CREATE DATABASE {name} TEMPLATE "{template}" TABLESPACE {name}')
            try:
                yield make_url(postgres_server_url).set(database=name).render_as_string(False), mount
            finally:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    connection.exec_driver_sql(f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        admin.dispose()
        mount.rmdir()
