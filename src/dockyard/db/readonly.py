"""The runtime read-only switch: a running registry stops taking writes, without a restart.

`dockyard move` (and `dockyard read-only on`) write a flag file, `<datadir>/run/read-only`, naming the
deployment it freezes: its database and its blob storage. Every process of the node that serves that
deployment sees it (when it is off, checking costs one failed open(), about a microsecond):

- `Database.write()` checks it just before COMMIT: a write transaction that finds the flag rolls back
  and raises ReadOnly (the OCI API answers 405 UNSUPPORTED, the management API 412). Checking at the
  commit, not at the start, makes the switch a barrier: once the flag is written and every write
  transaction open at that moment has ended (`wait_for_writers`), nothing more commits.
- `Registry` checks it before a push starts, so a client is refused before it sends a body.
- Bookkeeping a read makes on the side (a login's time, a pull's time) is skipped (`unless_full`).

The flag names its deployment so that a restart on the *new* config (the same datadir, another database
or storage) is writable, while the old one stays read-only until `dockyard read-only off`. It is per
node: a deployment with several nodes has each of them frozen, or stopped (docs/move.md).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from dockyard.config.settings import Settings
from dockyard.db.engine import normalise_url

FLAG_NAME = "read-only"


def flag_path(datadir: Path) -> Path:
    return datadir / "run" / FLAG_NAME


def deployment_identity(settings: Settings) -> str:
    """The database and the blob storage a config serves, as one line (no password)."""
    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = f"sqlite:{Path(url.database or '').resolve()}"
    else:
        without_password = URL.create(
            url.drivername, url.username, None, url.host, url.port, url.database, url.query
        )
        database = without_password.render_as_string(hide_password=False)
    storage = settings.storage
    if storage.s3 is not None:
        endpoint = storage.s3.regionendpoint or f"aws:{storage.s3.region or ''}"
        blobs = f"s3:{endpoint}/{storage.s3.bucket}/{(storage.s3.rootdirectory or '').strip('/')}"
    elif storage.inmemory is not None:
        blobs = "inmemory"
    else:
        blobs = f"filesystem:{settings.storage_root.resolve()}"
    return f"{database} {blobs}"


@dataclass(frozen=True)
class FlagState:
    deployment: str
    reason: str
    since: str


@dataclass(frozen=True)
class ReadOnlyFlag:
    """The switch of one deployment on this node."""

    path: Path
    deployment: str

    @classmethod
    def for_settings(cls, settings: Settings) -> ReadOnlyFlag:
        return cls(flag_path(settings.datadir), deployment_identity(settings))

    def is_on(self) -> bool:
        # Asked twice by every write (before it and at its commit): a missing flag is found without
        # the FileNotFoundError an open raises (~1 µs of CPU against ~6).
        if not os.access(self.path, os.F_OK):
            return False
        try:  # gone again meanwhile: off
            with open(self.path, encoding="utf-8") as flag:
                return flag.readline().rstrip("\n") == self.deployment
        except OSError:  # no flag (the normal case), or none readable: writes go on
            return False

    def state(self) -> FlagState | None:
        """What the flag file says, whichever deployment it names (None: no flag)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        lines += [""] * (3 - len(lines))
        return FlagState(lines[0], lines[1], lines[2])

    def turn_on(self, reason: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        since = datetime.now(UTC).isoformat(timespec="seconds")
        partial.write_text(f"{self.deployment}\n{' '.join(reason.split())}\n{since}\n", encoding="utf-8")
        os.replace(partial, self.path)  # every reader sees no flag or a whole one

    def turn_off(self) -> bool:
        """Remove the flag if it names this deployment; whether it did."""
        if not self.is_on():
            return False
        self.path.unlink(missing_ok=True)
        return True


def wait_for_writers(engine: Engine, timeout: float, poll: float = 0.05) -> None:
    """Return once every write transaction that was open when this was called has ended: the barrier
    after turning the flag on (each of them either committed, or found the flag and rolled back).
    TimeoutError if some are still open after `timeout` seconds."""
    if engine.dialect.name == "sqlite":
        # One writer at a time: taking the write lock waits for the current one, and any writer after
        # it checks the flag while it holds the lock.
        raw = engine.raw_connection()
        try:
            sqlite = raw.driver_connection
            assert isinstance(sqlite, sqlite3.Connection)
            sqlite.execute(f"PRAGMA busy_timeout={max(1, int(timeout * 1000))}")
            try:
                sqlite.execute("BEGIN IMMEDIATE")
                sqlite.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # "database is locked": the writer outlasted timeout
                raise TimeoutError(
                    f"a write transaction still holds the database after {timeout:.0f} s"
                ) from exc
            finally:
                sqlite.execute("PRAGMA busy_timeout=30000")
        finally:
            raw.close()
        return
    # PostgreSQL: the transactions that have written (an xid) and began before now, on this database.
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL AND xact_start < :since"
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        since = connection.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
        connection.commit()
        while True:
            open_writers = connection.execute(query, {"since": since}).scalar_one()
            connection.commit()
            if not open_writers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{open_writers} write transaction(s) still open after {timeout:.0f} s")
            time.sleep(poll)
