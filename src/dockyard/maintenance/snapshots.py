"""The metadata DB's part of a backup: a consistent snapshot as a SQLite file, whatever database the
registry runs on, what it holds (read from that same snapshot), and restoring it into an empty
database of either kind.

- From SQLite: the online backup API copies the live file into `database.sqlite3`.
- From PostgreSQL: a fresh SQLite file at this version's schema gets every table's rows
  (maintenance.tables), read in one REPEATABLE READ transaction; the blob list and the counts are read
  in that same transaction: the rows and the blobs to copy are one moment of the database.
- Into SQLite: the file is copied into place. Into PostgreSQL: the rows are copied into the emptied
  database in one transaction (all of it or nothing), and its sequences set past them. A snapshot from
  an older dockyard is brought to this version's schema first (on a scratch copy).
- `database.pgdump` (backups of PostgreSQL by dockyard versions before the SQLite format): restored by
  `pg_restore --single-transaction` into PostgreSQL only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from dockyard.db.engine import build_engine
from dockyard.db.migrate import is_up_to_date, upgrade
from dockyard.errors import ConfigError
from dockyard.maintenance.interfaces import MaintenanceError
from dockyard.maintenance.postgres_tools import find_tool, libpq_target, run_tool, server_major_version
from dockyard.maintenance.tables import check_tables, copy_rows, model_tables, reset_sequences
from dockyard.registry.models import Manifest, Repository, Tag
from dockyard.storage.models import Blob

SQLITE_FILE = "database.sqlite3"
POSTGRES_FILE = "database.pgdump"
CONTENT_TABLES = ("blobs", "repositories", "manifests")  # rows here make a deployment non-empty


@dataclass
class SnapshotContents:
    """What the snapshot holds: the blobs to copy and the counts the backup manifest records."""

    blobs: list[tuple[str, int]] = field(default_factory=list)
    repositories: int = 0
    manifests: int = 0
    tags: int = 0
    schema_revision: str | None = None


def read_contents(connection: Connection) -> SnapshotContents:
    def count(model: Any) -> int:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)

    blobs = connection.execute(select(Blob.digest, Blob.size).order_by(Blob.digest)).all()
    revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return SnapshotContents(
        blobs=[(digest, int(size)) for digest, size in blobs],
        repositories=count(Repository),
        manifests=count(Manifest),
        tags=count(Tag),
        schema_revision="+".join(sorted(revisions)) or None,
    )


# --- snapshot -----------------------------------------------------------------------------------
def snapshot_database(engine: Engine, dest: Path) -> tuple[dict[str, Any], SnapshotContents]:
    """Snapshot the database into dest; returns the backup manifest's `database` entry and contents."""
    dialect = engine.dialect.name
    entry = {"dialect": "sqlite", "file": SQLITE_FILE, "source": dialect}
    if dialect == "sqlite":
        return entry, _snapshot_sqlite(engine, dest / SQLITE_FILE)
    if dialect == "postgresql":
        return entry, _snapshot_rows(engine, dest / SQLITE_FILE)
    raise ConfigError(f"backup of a {dialect} database is not supported (sqlite, postgresql)")


def _snapshot_sqlite(engine: Engine, target: Path) -> SnapshotContents:
    partial = _partial(target)
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
    with _plain_sqlite(target) as connection:
        return read_contents(connection)


def _snapshot_rows(engine: Engine, target: Path) -> SnapshotContents:
    """Every table's rows into a new SQLite file, and the contents, from one read transaction."""
    partial = _partial(target)
    tables = model_tables()
    copy = create_engine(f"sqlite:///{partial}", poolclass=NullPool)
    try:
        upgrade(copy)
        with engine.connect() as connection:
            connection = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            with connection.begin(), copy.begin() as writing:
                check_tables(connection, tables, "registry's")
                copy_rows(connection, writing, tables)
                contents = read_contents(connection)
    finally:
        copy.dispose()
    os.replace(partial, target)
    return contents


# --- restore ------------------------------------------------------------------------------------
def check_restorable(entry: dict[str, Any], url: str) -> None:
    """A SQLite snapshot restores into either database; an older backup's pg_dump archive into
    PostgreSQL only."""
    target = make_url(url).get_backend_name()
    if entry.get("file") == POSTGRES_FILE and target != "postgresql":
        raise ConfigError(
            "this backup holds a pg_dump archive (an older dockyard's backup of PostgreSQL): restore it "
            "into a postgresql deployment"
        )
    if target == "sqlite" and not _sqlite_path(url):
        raise ConfigError("database.url: restore needs a SQLite file, not an in-memory database")


def what_database_holds(url: str) -> str | None:
    """Which content table has rows (None: empty, or not created yet)."""
    if make_url(url).get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        if path is None or not path.exists():
            return None
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            for table in CONTENT_TABLES:
                if table in tables and connection.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first():
                    return table
    except DBAPIError as exc:
        raise MaintenanceError(f"cannot open the target database: {exc.orig}") from exc
    finally:
        engine.dispose()
    return None


def restore_database(entry: dict[str, Any], src: Path, url: str) -> None:
    """Replace the target database's contents with the backup's (the caller checked it may)."""
    snapshot = src / entry["file"]
    if not snapshot.is_file():
        raise MaintenanceError(f"{src}: the database snapshot {entry['file']} is missing")
    if entry["file"] == POSTGRES_FILE:
        _restore_pg_dump(snapshot, url)
    elif make_url(url).get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        assert path is not None
        _restore_sqlite(snapshot, path)
    else:
        _restore_rows(snapshot, url)


def _restore_sqlite(snapshot: Path, database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):  # an empty (perhaps migrated) or forced-over database goes
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    partial = _partial(database)
    with (
        contextlib.closing(sqlite3.connect(snapshot)) as source,
        contextlib.closing(sqlite3.connect(partial)) as copy,
    ):
        source.backup(copy)
    os.replace(partial, database)


def _restore_rows(snapshot: Path, url: str) -> None:
    """The snapshot's rows into a PostgreSQL database emptied and migrated to this version, in one
    transaction."""
    tables = model_tables()
    with _at_head(snapshot) as source:
        engine = build_engine(url)
        try:
            _drop_tables(engine)
            upgrade(engine)
            with source.connect() as reading, reading.begin(), engine.begin() as writing:
                check_tables(reading, tables, "backup's")
                copy_rows(reading, writing, tables)
                reset_sequences(writing)
        except DBAPIError as exc:
            raise MaintenanceError(f"cannot restore into the target database: {exc.orig}") from exc
        finally:
            engine.dispose()


@contextlib.contextmanager
def _at_head(snapshot: Path) -> Iterator[Engine]:
    """An engine on the snapshot at this version's schema: the file itself when it is at head (only
    read), else a scratch copy brought there (a backup from an older dockyard stays as it was)."""
    engine = create_engine(f"sqlite:///{snapshot}", poolclass=NullPool)
    try:
        if is_up_to_date(engine):
            yield engine
            return
    finally:
        engine.dispose()
    with tempfile.TemporaryDirectory(prefix="dockyard-restore-") as scratch:
        copy = Path(scratch) / SQLITE_FILE
        _restore_sqlite(snapshot, copy)
        engine = create_engine(f"sqlite:///{copy}", poolclass=NullPool)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


def _drop_tables(engine: Engine) -> None:
    """An empty deployment may already be migrated (a server started on it once), and --force
    restores over anything: dockyard's tables go first."""
    try:
        with engine.begin() as connection:
            metadata = MetaData()
            metadata.reflect(connection)
            metadata.drop_all(connection)
    except DBAPIError as exc:
        raise MaintenanceError(f"cannot prepare the target database: {exc.orig}") from exc


def _restore_pg_dump(snapshot: Path, url: str) -> None:
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            major = server_major_version(connection)
        _drop_tables(engine)  # the archive recreates them all
    except DBAPIError as exc:
        raise MaintenanceError(f"cannot prepare the target database: {exc.orig}") from exc
    finally:
        engine.dispose()
    uri, env = libpq_target(url)
    pg_restore = find_tool("pg_restore", major)
    run_tool(
        [
            pg_restore,
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-acl",
            f"--dbname={uri}",
            str(snapshot),
        ],
        env,
    )


# --- helpers ------------------------------------------------------------------------------------
def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


@contextlib.contextmanager
def _plain_sqlite(path: Path) -> Iterator[Connection]:
    """A connection that leaves the file as it is (dockyard's engine would switch it to WAL)."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _partial(target: Path) -> Path:
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    return partial
