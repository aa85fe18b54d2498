"""`dockyard backup` and `dockyard restore`.

A backup directory holds:

    manifest.json              what, when, counts, schema revision
    database.sqlite3           a consistent snapshot of the metadata DB
    blobs/<alg>/<xx>/<hex>/data  every blob the snapshot knows, laid out like the storage driver's

The DB is snapshotted first and the blobs to copy are read from the snapshot (the DB is the source
of truth, never a storage walk), so the copy is consistent as long as nothing deletes blobs while
it runs (no garbage collection during a backup). Blobs are content-addressed, so a backup into the
same directory again copies only the new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from dockyard.config.settings import Settings
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.errors import ConfigError, PathNotFound
from dockyard.maintenance.interfaces import (
    MaintenanceError,
    MaintenanceServices,
    NullProgress,
    Problems,
    Progress,
    hasher_for,
    read_chunks,
)
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.paths import BLOBS_ROOT, blob_data_path

FORMAT = "dockyard-backup"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
DATABASE_FILE = "database.sqlite3"


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


# --- backup -------------------------------------------------------------------------------------
def backup(services: MaintenanceServices, dest: Path, progress: Progress | None = None) -> BackupResult:
    progress = progress or NullProgress()
    dest.mkdir(parents=True, exist_ok=True)
    snapshot = dest / DATABASE_FILE
    progress.phase("database snapshot", 1)
    _snapshot_database(services.db.engine, snapshot)
    progress.advance()
    result = BackupResult()
    with _sqlite(snapshot) as db:
        result.schema_revision = _schema_revision(db)
        result.repositories, result.manifests, result.tags = (
            _count(db, table) for table in ("repositories", "manifests", "tags")
        )
        blobs = db.execute("SELECT digest, size FROM blobs ORDER BY digest").fetchall()
    result.blobs = len(blobs)
    progress.phase("blobs", sum(size for _, size in blobs))
    for digest, size in blobs:
        target = dest / blob_data_path(digest)
        if target.is_file() and target.stat().st_size == size:
            progress.advance(size)  # content-addressed: already in this backup
            continue
        try:
            with services.driver.open_read(blob_data_path(digest)) as stream:
                _write_verified(read_chunks(stream), target, digest, size, progress)
        except PathNotFound:
            result.problems.add(f"blob {digest}: missing from storage, not backed up")
            continue
        except MaintenanceError as exc:
            result.problems.add(str(exc.args[0]))
            continue
        result.blobs_copied += 1
        result.bytes_copied += size
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "database": {"dialect": "sqlite", "file": DATABASE_FILE},
        "schema_revision": result.schema_revision,
        "counts": {
            "blobs": result.blobs,
            "bytes": sum(size for _, size in blobs),
            "repositories": result.repositories,
            "manifests": result.manifests,
            "tags": result.tags,
        },
        "problems": result.problems.items,
    }
    _write_atomically(dest / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    return result


def _snapshot_database(engine: Engine, target: Path) -> None:
    if engine.dialect.name != "sqlite":
        # TODO(issue 4): PostgreSQL through `pg_dump --format=custom` into the backup directory,
        # and `pg_restore` in restore(); the blob copy below works unchanged.
        raise ConfigError(f"backup of a {engine.dialect.name} database is not implemented yet (SQLite only)")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        with contextlib.closing(sqlite3.connect(partial)) as copy:
            # SQLite's online backup API: a consistent snapshot while the server keeps writing.
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        raw.close()
    os.replace(partial, target)


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


# --- restore ------------------------------------------------------------------------------------
def restore(
    src: Path, settings: Settings, driver: StorageDriver, progress: Progress | None = None
) -> RestoreResult:
    """Restore a backup into an empty deployment: the DB first, then the blobs through the driver."""
    progress = progress or NullProgress()
    manifest = read_backup_manifest(src)
    database = _sqlite_path(settings.database_url)
    _refuse_non_empty(database, driver)
    progress.phase("database", 1)
    _restore_database(src / manifest["database"]["file"], database)
    progress.advance()
    with _sqlite(database) as db:
        blobs = db.execute("SELECT digest, size FROM blobs ORDER BY digest").fetchall()
    result = RestoreResult(blobs=len(blobs))
    progress.phase("blobs", sum(size for _, size in blobs))
    for digest, size in blobs:
        source = src / blob_data_path(digest)
        if not source.is_file():
            result.problems.add(f"blob {digest}: not in the backup")
            continue
        try:
            _restore_blob(source, driver, digest, size, progress)
        except MaintenanceError as exc:
            result.problems.add(str(exc.args[0]))
            continue
        result.bytes_restored += size
    # A backup from an older dockyard: bring its schema up to this version's.
    engine = build_engine(settings.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
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
    if manifest.get("database", {}).get("dialect") != "sqlite":
        raise ConfigError("restoring a non-SQLite backup is not implemented yet")
    return manifest


def _sqlite_path(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        # TODO(issue 4): PostgreSQL restore with pg_restore into an empty database.
        raise ConfigError(
            f"restore into a {parsed.get_backend_name()} database is not implemented yet (SQLite files only)"
        )
    return Path(parsed.database)


def _refuse_non_empty(database: Path, driver: StorageDriver) -> None:
    if database.exists():
        with _sqlite(database) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for table in ("blobs", "repositories", "manifests"):
                if table in tables and _count(db, table):
                    raise MaintenanceError(
                        f"the database {database} already holds {table}: restore needs an empty deployment"
                    )
    try:
        stored = driver.list(BLOBS_ROOT)
    except PathNotFound:
        stored = []
    if stored:
        raise MaintenanceError("the storage already holds blobs: restore needs an empty deployment")


def _restore_database(snapshot: Path, database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):  # an empty, perhaps migrated, database goes
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    partial = database.with_name(database.name + ".partial")
    partial.unlink(missing_ok=True)
    with _sqlite(snapshot) as source, contextlib.closing(sqlite3.connect(partial)) as copy:
        source.backup(copy)
    os.replace(partial, database)


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


# --- helpers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path)
    try:
        yield connection
    finally:
        connection.close()


def _count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # table names are ours


def _schema_revision(db: sqlite3.Connection) -> str | None:
    try:
        rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.OperationalError:
        return None
    return "+".join(sorted(row[0] for row in rows)) or None
