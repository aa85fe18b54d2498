"""`dockyard backup` and `dockyard restore`.

A backup directory holds:

    manifest.json                  what, when, counts, schema revision, which database snapshot
    database.sqlite3               a consistent snapshot of the metadata DB as a SQLite file, whatever
                                   the registry runs on: it restores into SQLite or PostgreSQL
                                   (maintenance.snapshots; older backups of PostgreSQL: database.pgdump)
    blobs/<alg>/<xx>/<hex>/data    every blob the snapshot knows, laid out like the storage driver's

The DB is snapshotted first and the blobs to copy are read from that snapshot (the DB is the source of
truth, never a storage walk); blobs are read and written through the storage driver, so any driver
(filesystem, S3, ...) backs up and restores. Blobs written after the snapshot are not in it; a blob
the snapshot lists but that garbage collection deleted before it was copied is reported as a problem
(see docs/backup.md: the GC only deletes blobs unreferenced for longer than its window, so a backup
that finishes within it is complete). Blobs are content-addressed, so a backup into the same
directory again copies only the new ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.config.settings import Settings
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.errors import PathNotFound
from dockyard.maintenance.interfaces import (
    MaintenanceError,
    MaintenanceServices,
    NullProgress,
    Problems,
    Progress,
    hasher_for,
    read_chunks,
)
from dockyard.maintenance.snapshots import (
    POSTGRES_FILE,
    SQLITE_FILE,
    check_restorable,
    read_contents,
    restore_database,
    snapshot_database,
    what_database_holds,
)
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.paths import BLOBS_ROOT, blob_data_path

FORMAT = "dockyard-backup"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass
class BackupResult:
    blobs: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    repositories: int = 0
    manifests: int = 0
    tags: int = 0
    schema_revision: str | None = None
    problems: Problems = field(default_factory=Problems)


@dataclass
class RestoreResult:
    blobs: int = 0
    bytes_restored: int = 0
    problems: Problems = field(default_factory=Problems)


# --- backup ---------------------------------------------------------------------------------------
def backup(services: MaintenanceServices, dest: Path, progress: Progress | None = None) -> BackupResult:
    progress = progress or NullProgress()
    dest.mkdir(parents=True, exist_ok=True)
    progress.phase("database snapshot", 1)
    database, contents = snapshot_database(services.db.engine, dest)
    progress.advance()
    for stale in {SQLITE_FILE, POSTGRES_FILE} - {database["file"]}:
        (dest / stale).unlink(missing_ok=True)  # this directory last backed up the other kind of DB
    result = BackupResult(
        blobs=len(contents.blobs),
        repositories=contents.repositories,
        manifests=contents.manifests,
        tags=contents.tags,
        schema_revision=contents.schema_revision,
    )
    progress.phase("blobs", sum(size for _, size in contents.blobs))
    for digest, size in contents.blobs:
        _backup_blob(services.driver, dest, digest, size, progress, result)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "database": database,
        "schema_revision": result.schema_revision,
        "counts": {
            "blobs": result.blobs,
            "bytes": sum(size for _, size in contents.blobs),
            "repositories": result.repositories,
            "manifests": result.manifests,
            "tags": result.tags,
        },
        "problems": result.problems.items,
    }
    _write_atomically(dest / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    return result


def _backup_blob(
    driver: StorageDriver, dest: Path, digest: str, size: int, progress: Progress, result: BackupResult
) -> None:
    target = dest / blob_data_path(digest)
    if target.is_file() and target.stat().st_size == size:
        progress.advance(size)  # content-addressed: already in this backup
        return
    try:
        with driver.open_read(blob_data_path(digest)) as stream:
            _write_verified(read_chunks(stream), target, digest, size, progress)
    except PathNotFound:
        progress.advance(size)
        result.problems.add(
            f"blob {digest}: missing from storage, not backed up (deleted by garbage collection since "
            "the snapshot? run the backup again, with no GC running: it copies only what is new)"
        )
        return
    except MaintenanceError as exc:
        result.problems.add(str(exc.args[0]))
        return
    result.blobs_copied += 1
    result.bytes_copied += size


def _write_verified(
    chunks: Iterator[bytes], target: Path, digest: str, size: int, progress: Progress
) -> None:
    """Write chunks to target through a temp file, keeping it only if the bytes match digest and size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    hasher = hasher_for(digest)
    written = 0
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                hasher.update(chunk)
                out.write(chunk)
                written += len(chunk)
                progress.advance(len(chunk))
        actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if actual != digest or written != size:
            raise MaintenanceError(f"blob {digest}: corrupt in storage ({written} bytes hashing to {actual})")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


# --- restore ----------------------------------------------------------------------------------
def restore(
    src: Path,
    settings: Settings,
    driver: StorageDriver,
    progress: Progress | None = None,
    force: bool = False,
) -> RestoreResult:
    """Restore a backup into an empty deployment (with force: over anything): the DB first, then the
    blobs through the driver."""
    progress = progress or NullProgress()
    manifest = read_backup_manifest(src)
    url = settings.database_url
    check_restorable(manifest["database"], url)
    if not force:
        _refuse_non_empty(url, driver)
    progress.phase("database", 1)
    restore_database(manifest["database"], src, url)
    progress.advance()
    engine = build_engine(url)
    try:
        # A backup from an older dockyard: bring its schema up to this version's.
        upgrade(engine)
        with engine.connect() as connection:
            blobs = read_contents(connection).blobs
    finally:
        engine.dispose()
    result = RestoreResult(blobs=len(blobs))
    progress.phase("blobs", sum(size for _, size in blobs))
    for digest, size in blobs:
        source = src / blob_data_path(digest)
        if not source.is_file():
            result.problems.add(f"blob {digest}: not in the backup")
            progress.advance(size)
            continue
        try:
            if not _already_stored(driver, digest, size):  # a forced or repeated restore
                _restore_blob(source, driver, digest, size, progress)
            else:
                progress.advance(size)
        except MaintenanceError as exc:
            result.problems.add(str(exc.args[0]))
            continue
        result.bytes_restored += size
    return result


def read_backup_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise MaintenanceError(
            f"{src} is not a dockyard backup: no readable {MANIFEST_FILE} ({exc})"
        ) from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise MaintenanceError(
            f"{src}: unsupported backup format {manifest.get('format')!r} {manifest.get('version')!r}"
        )
    database = manifest.get("database")
    if not isinstance(database, dict) or database.get("file") not in (SQLITE_FILE, POSTGRES_FILE):
        raise MaintenanceError(f"{src}: {MANIFEST_FILE} names no database snapshot")
    return manifest


def _refuse_non_empty(url: str, driver: StorageDriver) -> None:
    held = what_database_holds(url)
    if held:
        raise MaintenanceError(
            f"the target database already holds {held}: restore needs an empty deployment "
            "(--force restores over it, replacing the database)"
        )
    try:
        stored = driver.list(BLOBS_ROOT)
    except PathNotFound:
        stored = []
    if stored:
        raise MaintenanceError(
            "the storage already holds blobs: restore needs an empty deployment "
            "(--force restores over it, keeping blobs already there)"
        )


def _already_stored(driver: StorageDriver, digest: str, size: int) -> bool:
    try:
        return driver.stat(blob_data_path(digest)).size == size
    except PathNotFound:
        return False


def _restore_blob(source: Path, driver: StorageDriver, digest: str, size: int, progress: Progress) -> None:
    hasher = hasher_for(digest)
    writer = driver.writer(blob_data_path(digest))
    try:
        with source.open("rb") as stream:
            for chunk in read_chunks(stream):
                hasher.update(chunk)
                writer.write(chunk)
                progress.advance(len(chunk))
        actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if actual != digest or writer.size != size:
            raise MaintenanceError(
                f"blob {digest}: corrupt in the backup ({writer.size} bytes hashing to {actual})"
            )
    except BaseException:
        writer.cancel()
        raise
    writer.commit()
