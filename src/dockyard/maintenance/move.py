"""`dockyard move`: carry a running registry onto another database and/or blob storage (SQLite and a
disk onto PostgreSQL and S3, typically) while it keeps serving.

1. Checks, before anything is copied: the source is at this dockyard's schema and has no table the
   models lack; the target database is reachable and empty (it is migrated to the same head); the
   target storage answers.
2. Blobs, online: every blob the source records, copied and verified (maintenance.blobcopy), the
   registry serving pulls and pushes meanwhile. A blob the target already holds is not copied again,
   so a second run (`--blobs-only` the day before, say) copies only what is new.
3. The read-only window: the runtime switch goes on (db.readonly) and the move waits until no write
   can commit any more. Pulls go on; a push gets the spec's clear error. In one read snapshot of the
   source it copies the blobs recorded since step 2 began, the unfinished uploads, and every table's
   rows (maintenance.tables) in one target transaction, then checks the row counts.
4. The switch stays on: this deployment's data now lives in the target, so the registry is restarted
   on the new config. If anything fails before the target's transaction commits, the switch goes off
   again and the source carries on as before (the target database is left empty: run the move again).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Table, delete, func, or_, select
from sqlalchemy.exc import DBAPIError

from dockyard.db.base import utcnow
from dockyard.db.migrate import is_up_to_date, upgrade
from dockyard.db.readonly import ReadOnlyFlag, wait_for_writers
from dockyard.errors import DockyardError, PathNotFound, StorageError
from dockyard.maintenance.blobcopy import Copied, copy_blob, copy_upload, parallel
from dockyard.maintenance.interfaces import MaintenanceError, NullProgress, Problems, Progress
from dockyard.maintenance.tables import (
    check_tables,
    copy_rows,
    model_tables,
    reset_sequences,
    row_counts,
    tables_with_rows,
)
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.models import Blob, Upload

PAGE = 1000  # blob rows read per short transaction while the registry serves
# Blobs recorded this long before the online copy began are listed again in the window, in case a
# writer's clock is behind this one's (several nodes on a PostgreSQL source).
CLOCK_MARGIN = timedelta(minutes=5)


@dataclass
class MovePlan:
    source: Engine
    source_driver: StorageDriver
    flag: ReadOnlyFlag  # the source deployment's runtime switch on this node
    target: Engine | None = None  # None: the database stays
    target_driver: StorageDriver | None = None  # None: the blob storage stays
    reason: str = "moved by `dockyard move`"  # what `dockyard read-only` and `serve` say afterwards
    workers: int = 4  # blobs copied at once
    window_timeout: float = 60.0  # how long writes in flight may delay the window


@dataclass
class MoveResult:
    blobs: int = 0  # recorded in the source
    blobs_copied: int = 0
    bytes_copied: int = 0
    uploads_carried: int = 0
    uploads_dropped: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # copied per table
    window_seconds: float | None = None  # None: no window (blobs only)
    problems: Problems = field(default_factory=Problems)
    _retry: set[str] = field(default_factory=set)


def move(plan: MovePlan, progress: Progress | None = None, blobs_only: bool = False) -> MoveResult:
    progress = progress or NullProgress()
    if plan.target is None and plan.target_driver is None:
        raise MaintenanceError("nothing to move to: name a target database, a target storage, or both")
    tables = preflight(plan)
    result = MoveResult()
    online_since = utcnow()
    if plan.target_driver is not None:
        _copy_blobs_online(plan, plan.target_driver, progress, result)
    if blobs_only:
        return result
    plan.flag.turn_on(plan.reason)
    try:
        wait_for_writers(plan.source, plan.window_timeout)
        started = time.monotonic()
        with _snapshot(plan.source) as snapshot:
            result.blobs = int(snapshot.scalar(select(func.count()).select_from(Blob)) or 0)
            if plan.target_driver is not None:
                since = online_since - CLOCK_MARGIN
                _copy_last_blobs(plan, plan.target_driver, snapshot, since, progress, result)
                _carry_uploads(plan, plan.target_driver, snapshot, result)
            if plan.target is not None:
                _copy_metadata(plan.target, snapshot, tables, progress, result)
            elif result.uploads_dropped:  # same database, new storage: their bytes stayed behind
                with plan.source.begin() as connection:  # the move's own write, past the switch
                    connection.execute(delete(Upload).where(Upload.id.in_(result.uploads_dropped)))
        result.window_seconds = time.monotonic() - started
    except BaseException:
        plan.flag.turn_off()  # nothing moved: the source takes writes again
        raise
    return result


def preflight(plan: MovePlan) -> list[Table]:
    """Everything that can be checked before a byte is copied; the models' tables."""
    tables = model_tables()
    try:
        if not is_up_to_date(plan.source):
            raise MaintenanceError(
                "the source database is not at this dockyard's schema: run `dockyard db upgrade` "
                "(or start `dockyard serve` of this version once) first"
            )
        with plan.source.connect() as connection:
            check_tables(connection, tables, "source")
    except DBAPIError as exc:
        raise MaintenanceError(f"cannot read the source database: {exc.orig}") from exc
    if plan.target is not None:
        _prepare_target_database(plan.target, tables)
    if plan.target_driver is not None:
        try:
            plan.target_driver.list("")
        except PathNotFound:
            pass
        except StorageError as exc:
            raise MaintenanceError(f"cannot reach the target storage: {exc}") from exc
    return tables


def _prepare_target_database(target: Engine, tables: list[Table]) -> None:
    try:
        with target.connect() as connection:
            held = tables_with_rows(connection, tables)
        if held:
            raise MaintenanceError(
                f"the target database is not empty (table {held[0]} has rows): a move needs an empty "
                "database (drop and create it again, or name another)"
            )
        upgrade(target)  # an empty database gets this dockyard's schema
        with target.connect() as connection:
            check_tables(connection, tables, "target")
    except DBAPIError as exc:
        raise MaintenanceError(f"cannot use the target database: {exc.orig}") from exc


# --- blobs ------------------------------------------------------------------------------------
def _copy_blobs_online(plan: MovePlan, target: StorageDriver, progress: Progress, result: MoveResult) -> None:
    with plan.source.connect() as connection:
        count, total = connection.execute(select(func.count(), func.sum(Blob.size))).one()
    result.blobs = int(count or 0)
    progress.phase("blobs", int(total or 0))

    def work(row: tuple[str, int, bool]) -> Copied:
        return copy_blob(plan.source_driver, target, row[0], row[1], progress)

    for (digest, size, _deleting), outcome in parallel(_blob_pages(plan.source), work, plan.workers):
        if isinstance(outcome, BaseException) or outcome is Copied.MISSING:
            result._retry.add(digest)  # looked at again in the window, where it counts
        elif outcome is Copied.COPIED:
            result.blobs_copied += 1
            result.bytes_copied += size


def _blob_pages(engine: Engine) -> Iterator[tuple[str, int, bool]]:
    """Every blob row, a page per short read transaction: a long one would hold back SQLite's WAL
    checkpoints for as long as the copy takes."""
    last = ""
    while True:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Blob.digest, Blob.size, Blob.deleting_since.is_not(None))
                .where(Blob.digest > last)
                .order_by(Blob.digest)
                .limit(PAGE)
            ).all()
        if not rows:
            return
        for digest, size, deleting in rows:
            yield digest, int(size), bool(deleting)
        last = rows[-1][0]


def _copy_last_blobs(
    plan: MovePlan,
    target: StorageDriver,
    snapshot: Connection,
    since: datetime,
    progress: Progress,
    result: MoveResult,
) -> None:
    """The blobs recorded since the online copy began, and those it could not copy."""
    recent = or_(Blob.created_at >= since, Blob.digest.in_(sorted(result._retry)))
    query = select(Blob.digest, Blob.size, Blob.deleting_since.is_not(None)).where(recent)
    rows = [(digest, int(size), bool(deleting)) for digest, size, deleting in snapshot.execute(query)]
    progress.phase("last blobs", sum(size for _, size, _ in rows))

    def work(row: tuple[str, int, bool]) -> Copied:
        return copy_blob(plan.source_driver, target, row[0], row[1], progress)

    for (digest, size, deleting), outcome in parallel(rows, work, plan.workers):
        if isinstance(outcome, MaintenanceError):  # corrupt in the source: the target goes without it
            result.problems.add(str(outcome.args[0]))
        elif isinstance(outcome, BaseException):
            raise MaintenanceError(f"copying blob {digest} failed: {outcome}") from outcome
        elif outcome is Copied.MISSING and not deleting:  # garbage collection had it on its way out
            result.problems.add(
                f"blob {digest}: recorded but missing from the source storage, so not in the target "
                "either (`dockyard verify` reports it too)"
            )
        elif outcome is Copied.COPIED:
            result.blobs_copied += 1
            result.bytes_copied += size


def _carry_uploads(plan: MovePlan, target: StorageDriver, snapshot: Connection, result: MoveResult) -> None:
    for upload_id, size in snapshot.execute(select(Upload.id, Upload.size).order_by(Upload.id)):
        try:
            carried = copy_upload(plan.source_driver, target, upload_id, int(size))
        except DockyardError:
            carried = False
        if carried:
            result.uploads_carried += 1
        else:  # its client starts it again (BLOB_UPLOAD_UNKNOWN), as after an upload purge
            result.uploads_dropped.append(upload_id)


# --- metadata ---------------------------------------------------------------------------------
def _copy_metadata(
    target: Engine,
    snapshot: Connection,
    tables: list[Table],
    progress: Progress,
    result: MoveResult,
) -> None:
    expected = row_counts(snapshot, tables)
    progress.phase("tables", sum(expected.values()))
    try:
        with target.begin() as writing:
            if held := tables_with_rows(writing, tables):  # someone wrote to it since the checks
                raise MaintenanceError(f"the target database is not empty any more (table {held[0]})")
            result.rows = copy_rows(snapshot, writing, tables, progress)
            if result.uploads_dropped:
                writing.execute(delete(Upload).where(Upload.id.in_(result.uploads_dropped)))
            reset_sequences(writing)
            expected["uploads"] -= len(result.uploads_dropped)
            copied = row_counts(writing, tables)
            if copied != expected:
                wrong = sorted(name for name in expected if copied.get(name) != expected[name])
                raise MaintenanceError(f"row counts differ after the copy in: {', '.join(wrong)}")
    except DBAPIError as exc:
        raise MaintenanceError(f"copying the metadata failed: {exc.orig}") from exc  # counts, sequences


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction on the source: everything the window copies is of the same moment."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with connection.begin():
            yield connection
