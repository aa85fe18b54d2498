"""Storage quotas per project: a byte limit (None = unlimited), exact usage, a warning threshold.

What counts: every distinct blob some repository of the project links (pushed or mounted), and
every distinct manifest some repository of the project holds, each ONCE per project however many
repositories share it (table `project_blobs`). Manifests count, as in Harbor: their bytes live in
the metadata DB, and an image's manifest is part of what a push stores. The same content in two
projects counts in both (each project pays for what it can read); storage keeps one copy.

Usage (`projects.quota_used_bytes`) changes only in the transaction that changes what counts, under a
lock on the project's row (SELECT ... FOR NO KEY UPDATE on PostgreSQL; SQLite writers are serialised
anyway), so it stays exact under concurrent pushes, deletes and garbage collection. A push of content
the project counts already changes nothing: on PostgreSQL it share-locks that content's count row
instead, so pushes into one project do not queue on its row (registry.usage: how the two meet).

- `charge(connection, project_id, digest, size)`: call in the transaction that links a blob into a
  repository of the project, or stores a manifest in one. Counts the digest if not yet counted;
  raises `QuotaExceeded` (and the caller's transaction rolls back) if that would pass the limit.
- `dockyard.registry.usage.release(connection, project_id, digests)` (in the registry layer, which
  knows the link and manifest tables): call in the transaction that deleted blob links
  (`repository_blobs` rows) or manifest rows of the project, *after* deleting them, with the digests
  they had. Stops counting those no repository of the project still links or holds; returns the
  bytes freed. Garbage collection calls it for every project it removes links or manifests from,
  once per project per transaction (lock projects in ascending id order if one transaction
  touches several, so two collectors never deadlock).

Uploads in progress count too, as their bytes arrive: `Quotas.upload_room` gives each upload request
its room (projects.upload_room), which the edge checks a declared length against before reading a
byte and stops reading at. Before a commit moves anything, `Quotas.check_room` refuses content that
cannot fit (a read, no lock: the charge is the exact check). Both run on every upload request, so
each project's limit is cached (the composition root hands in a cache emptied by the change feed,
and `on_change` bumps it after every limit change and project delete): an unlimited project, the
default, costs no query at all; only a project with a limit reads its usage (one statement).

When usage passes the project's warning threshold (default 80% of the limit) an audit event
(`quota_warning`) is written in the same transaction and a warning logged; again after it drops
below and passes it once more.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy import BigInteger, Connection, Select, bindparam, delete, select, update
from sqlalchemy.sql.dml import Insert

from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditRecorder, ResourceType
from dockyard.coordination.interfaces import InvalidatedCache
from dockyard.db.base import utcnow
from dockyard.db.dialect import insert_for
from dockyard.db.session import Database
from dockyard.db.statements import DriverStatement
from dockyard.projects.interfaces import (
    InvalidQuota,
    ProjectEvents,
    ProjectNotFound,
    ProjectQuota,
    QuotaExceeded,
)
from dockyard.projects.models import ProjectBlobRow, ProjectRow
from dockyard.projects.rbac import project_of
from dockyard.projects.sizes import human
from dockyard.projects.upload_room import OpenUploads, UploadRoom, read_room

log = logging.getLogger("dockyard.projects.quotas")

DEFAULT_WARN_PERCENT = 80
MAX_LIMIT_BYTES = 2**62  # fits a signed 64-bit column with room for the additions


@dataclass(frozen=True, slots=True)
class _Usage:
    name: str
    used: int
    limit: int | None
    warn_percent: int


def lock_project(connection: Connection, project_id: int) -> _Usage:
    """Lock the project's row for the rest of the transaction and read its quota."""
    row = connection.execute(_LOCK_PROJECT, {"locked_project": project_id}).one()
    return _Usage(row.name, int(row.quota_used_bytes), row.quota_limit_bytes, int(row.quota_warn_percent))


def charge(
    connection: Connection,
    project_id: int,
    digest: str,
    size: int,
    audit: AuditRecorder | None = None,
    what: str = "blob",
    events: ProjectEvents | None = None,
    counted: bool | None = None,
) -> int:
    """Count `digest` (`size` bytes) in the project's usage unless it already counts. Returns the bytes
    added (0 or size). QuotaExceeded if that would pass the limit: let the transaction roll back.
    `counted`: what the caller's own statement found, in this transaction, when it looked for the count
    row as the first step below does (`COUNTED`, share-locked: registry.repository_writes runs it with
    the link, one round trip less); None: look here.

    Content the project counts already (a layer pushed to a second repository, a mount) costs one
    statement, or none past the caller's (`counted`). On SQLite, the INSERT that finds it there (one
    write transaction runs at a time). On PostgreSQL, a share lock on its count row, held to the
    commit: `release` locks the count rows before it decides what no longer counts, so it waits for
    this push and sees its link; content not counted yet is counted under the project's lock, as
    `release` decides under it too."""
    if counted:
        return 0
    if connection.dialect.name == "postgresql":
        if counted is None:
            key = {"counted_project": project_id, "counted_digest": digest}
            if _COUNTED_IN.execute(connection, key).first() is not None:
                return 0
        _LOCK_PROJECT_IN.execute(connection, {"locked_project": project_id})
    # RETURNING, not rowcount: a driver may report a row for an insert the conflict turned into nothing.
    inserted = _COUNT_DIGEST.execute(
        connection, {"project_id": project_id, "digest": digest, "size": size, "created_at": utcnow()}
    ).first()
    if inserted is None:
        return 0
    row = _ADD_USAGE_IN.execute(connection, {"counted_project": project_id, "added": size}).one()
    usage = _Usage(
        row.name, int(row.quota_used_bytes) - size, row.quota_limit_bytes, int(row.quota_warn_percent)
    )
    if usage.limit is not None and usage.used + size > usage.limit:
        raise QuotaExceeded(
            f"quota of project {usage.name} exceeded: used {human(usage.used)}, limit {human(usage.limit)}, "
            f"this {what} {human(size)}",
            detail={
                "project": usage.name,
                "used_bytes": usage.used,
                "limit_bytes": usage.limit,
                "size": size,
                "digest": digest,
            },
        )
    _warn_if_crossed(connection, usage, usage.used + size, audit, events=events)
    return size


_QUOTA_COLUMNS = (
    ProjectRow.name,
    ProjectRow.quota_used_bytes,
    ProjectRow.quota_limit_bytes,
    ProjectRow.quota_warn_percent,
)
# FOR NO KEY UPDATE on PostgreSQL: it still serialises the quota's readers-then-writers, but unlike FOR
# UPDATE it does not conflict with the KEY SHARE locks that inserting rows which refer to the project
# (repositories, project_blobs) take. With FOR UPDATE two pushes that had each inserted such a row
# deadlocked on the other's KEY SHARE.
_LOCK_PROJECT = (
    select(*_QUOTA_COLUMNS)
    .where(ProjectRow.id == bindparam("locked_project"))
    .with_for_update(key_share=True)
)
# The count row of (counted_project, counted_digest), share-locked (charge's first look on PostgreSQL).
COUNTED = (
    select(ProjectBlobRow.digest)
    .where(
        ProjectBlobRow.project_id == bindparam("counted_project"),
        ProjectBlobRow.digest == bindparam("counted_digest"),
    )
    .with_for_update(read=True, key_share=True)
)
# The usage after the addition, with what the check needs (the QuotaExceeded raised after it rolls it back).
_ADD_USAGE = (
    update(ProjectRow)
    .where(ProjectRow.id == bindparam("counted_project"))
    .values(quota_used_bytes=ProjectRow.quota_used_bytes + bindparam("added", type_=BigInteger))
    .returning(*_QUOTA_COLUMNS)
)


@functools.cache
def _count_digest(dialect: str) -> Insert:
    return insert_for(dialect, ProjectBlobRow).on_conflict_do_nothing().returning(ProjectBlobRow.digest)


# What every push's charge runs, on the driver connection in the caller's transaction (db.statements).
_COUNTED_IN = DriverStatement(COUNTED)
_LOCK_PROJECT_IN = DriverStatement(_LOCK_PROJECT)
_ADD_USAGE_IN = DriverStatement(_ADD_USAGE)
_COUNT_DIGEST = DriverStatement(_count_digest, column_keys=("project_id", "digest", "size", "created_at"))


def uncount(connection: Connection, project_id: int, digests: Collection[str]) -> int:
    """Stop counting `digests` in the project's usage; returns the bytes freed. The caller holds the
    project's lock (`lock_project`) and has checked that nothing of the project uses them any more:
    registry.usage.release does both, and is what deleting code calls."""
    if not digests:
        return 0
    sizes = connection.execute(
        delete(ProjectBlobRow)
        .where(ProjectBlobRow.project_id == project_id, ProjectBlobRow.digest.in_(sorted(set(digests))))
        .returning(ProjectBlobRow.size)
    ).scalars()
    freed = sum(int(size) for size in sizes)
    if freed:
        connection.execute(
            update(ProjectRow)
            .where(ProjectRow.id == project_id)
            .values(quota_used_bytes=ProjectRow.quota_used_bytes - freed)
        )
    return freed


def warn_threshold(limit: int | None, warn_percent: int) -> int | None:
    return None if limit is None else limit * warn_percent // 100


def _warn_if_crossed(
    connection: Connection,
    usage: _Usage,
    new_used: int,
    audit: AuditRecorder | None,
    reason: str = "push",
    events: ProjectEvents | None = None,
) -> None:
    threshold = warn_threshold(usage.limit, usage.warn_percent)
    if threshold is None or not usage.used < threshold <= new_used:
        return
    log.warning(
        "project %s passed %d%% of its storage quota: %s of %s",
        usage.name,
        usage.warn_percent,
        human(new_used),
        human(usage.limit or 0),
    )
    if audit is not None:
        audit.record_now(
            connection,
            AuditEvent(
                action=AuditAction.QUOTA_WARNING,
                actor="dockyard",
                actor_kind=ActorKind.SYSTEM,
                resource_type=ResourceType.PROJECT,
                resource_name=usage.name,
                detail={
                    "used_bytes": new_used,
                    "limit_bytes": usage.limit,
                    "warn_percent": usage.warn_percent,
                    "reason": reason,
                },
            ),
        )
    if events is not None:  # webhook policies: sent only if this transaction commits
        detail = {"used_bytes": new_used, "limit_bytes": usage.limit, "warn_percent": usage.warn_percent}
        events.in_transaction(connection, usage.name, "quota_warning", {**detail, "reason": reason})


@dataclass(frozen=True, slots=True)
class CachedLimit:
    limit_bytes: int | None  # None: unlimited (also a project that does not exist yet)


class Quotas:
    """Quota settings and usage by project name; the charge for the registry's link transactions."""

    def __init__(
        self,
        db: Database,
        audit: AuditRecorder | None = None,
        limits: InvalidatedCache[str, CachedLimit] | None = None,  # project -> its limit
        on_change: Callable[[], None] | None = None,
        events: ProjectEvents | None = None,  # quota warnings and refusals for webhook policies
    ) -> None:
        self._db = db
        self._audit = audit
        self.events = events
        self._limits = limits
        self._on_change = on_change
        # What this process's requests stream into uploads; its refusals go to webhook policies.
        self._open_uploads = OpenUploads(self._refused)

    def charge(
        self,
        connection: Connection,
        project_id: int,
        digest: str,
        size: int,
        what: str = "blob",
        counted: bool | None = None,
    ) -> int:
        try:
            return charge(connection, project_id, digest, size, self._audit, what, self.events, counted)
        except QuotaExceeded as exc:
            self._refused(exc)
            raise

    def _refused(self, exc: QuotaExceeded) -> None:
        """A refusal, for webhook policies: no I/O here (the caller's transaction rolls back)."""
        if self.events is not None and exc.detail:
            detail = dict(exc.detail)
            self.events.note(str(detail.pop("project", "")), "quota_exceeded", detail)

    def get(self, project: str) -> ProjectQuota:
        with self._db.read() as connection:
            row = connection.execute(_quota_query().where(ProjectRow.name == project)).first()
        if row is None:
            raise ProjectNotFound(detail={"project": project})
        return _quota(row)

    def all(self) -> list[ProjectQuota]:
        with self._db.read() as connection:
            return [_quota(row) for row in connection.execute(_quota_query().order_by(ProjectRow.name))]

    def set(
        self, project: str, limit_bytes: int | None, warn_percent: int = DEFAULT_WARN_PERCENT
    ) -> ProjectQuota:
        """Set the limit (None: unlimited) and the warning threshold. A limit below the current usage
        is allowed (as in Harbor): nothing is deleted, further pushes of new content are refused."""
        if limit_bytes is not None and not 0 <= limit_bytes <= MAX_LIMIT_BYTES:
            raise InvalidQuota(f"limit_bytes must be between 0 and {MAX_LIMIT_BYTES}, or null for no limit")
        if not 1 <= warn_percent <= 100:
            raise InvalidQuota("warn_percent must be between 1 and 100")
        with self._db.write() as connection:
            found = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == project))
            if found is None:
                raise ProjectNotFound(detail={"project": project})
            before = lock_project(connection, int(found))
            connection.execute(
                update(ProjectRow)
                .where(ProjectRow.id == found)
                .values(quota_limit_bytes=limit_bytes, quota_warn_percent=warn_percent, updated_at=utcnow())
            )
            # A lower limit can put usage past the threshold without a push: warn then too.
            old = warn_threshold(before.limit, before.warn_percent)
            was_over = old is not None and before.used >= old
            after = _Usage(before.name, 0 if was_over else before.used - 1, limit_bytes, warn_percent)
            if not was_over:
                _warn_if_crossed(
                    connection, after, before.used, self._audit, reason="limit changed", events=self.events
                )
        if self._on_change is not None:
            self._on_change()  # after the commit: every worker and node drops its cached limits
        return self.get(project)

    def upload_room(self, repository: str, size: int, digest: str | None = None) -> UploadRoom | None:
        """The room one request has to add bytes to an upload of `repository` that holds `size` bytes,
        counting every open upload of the project (projects.upload_room); None when the project has no
        limit, which costs no query once its limit is cached."""
        project = project_of(repository)
        generation = 0
        if self._limits is not None:
            generation = self._limits.current_generation()
            cached = self._limits.get(project)
            if cached is not None and cached.limit_bytes is None:
                return None
        with self._db.read() as connection:
            limit, room = read_room(connection, self._open_uploads, project, size, digest)
        if self._limits is not None:
            self._limits.put(project, CachedLimit(limit), generation)
        return room

    def check_room(self, repository: str, size: int, digest: str | None = None) -> None:
        """QuotaExceeded if an upload reaching `size` bytes could not fit the limit of the project
        `repository` is in: a refusal before a commit moves anything. Content the project already
        counts costs nothing, so with `digest` known that is checked exactly; without it (a chunk of an
        upload whose digest comes at the end) the refusal comes only when the upload cannot be content
        the project holds: it is already bigger than every blob the project counts."""
        project = project_of(repository)
        generation = 0
        if self._limits is not None:
            generation = self._limits.current_generation()
            cached = self._limits.get(project)
            if cached is not None and cached.limit_bytes is None:
                return
        with self._db.read() as connection:
            row = connection.execute(
                select(ProjectRow.id, ProjectRow.quota_used_bytes, ProjectRow.quota_limit_bytes).where(
                    ProjectRow.name == project
                )
            ).first()
            limit = None if row is None else row.quota_limit_bytes
            if self._limits is not None:
                self._limits.put(project, CachedLimit(limit), generation)
            if row is None or limit is None:
                return  # a project a push will create starts unlimited
            if row.quota_used_bytes + size <= limit:
                return
            held = select(ProjectBlobRow.digest).where(ProjectBlobRow.project_id == row.id)
            if digest is not None:
                held = held.where(ProjectBlobRow.digest == digest)
            else:
                held = held.where(ProjectBlobRow.size >= size)
            if connection.execute(held.limit(1)).first() is not None:
                return
        exc = QuotaExceeded(
            f"quota of project {project} exceeded: used {human(row.quota_used_bytes)}, "
            f"limit {human(limit)}, this blob {human(size)}",
            detail={
                "project": project,
                "used_bytes": int(row.quota_used_bytes),
                "limit_bytes": int(limit),
                "size": size,
            },
        )
        self._refused(exc)
        raise exc


def _quota_query() -> Select:
    return select(
        ProjectRow.name,
        ProjectRow.quota_limit_bytes,
        ProjectRow.quota_used_bytes,
        ProjectRow.quota_warn_percent,
    )


def _quota(row: object) -> ProjectQuota:
    return ProjectQuota(
        project=row.name,  # type: ignore[attr-defined]
        limit_bytes=row.quota_limit_bytes,  # type: ignore[attr-defined]
        used_bytes=int(row.quota_used_bytes),  # type: ignore[attr-defined]
        warn_percent=int(row.quota_warn_percent),  # type: ignore[attr-defined]
    )


def exposition(quotas: list[ProjectQuota]) -> bytes:
    """Prometheus text for the quota gauges, computed at scrape time from the DB (so every worker
    process and node answers the same, with no multiprocess bookkeeping)."""
    lines = [
        "# HELP dockyard_project_quota_used_bytes Bytes counted against the project's storage quota.",
        "# TYPE dockyard_project_quota_used_bytes gauge",
    ]
    lines += [f'dockyard_project_quota_used_bytes{{project="{q.project}"}} {q.used_bytes}' for q in quotas]
    lines += [
        "# HELP dockyard_project_quota_limit_bytes The project's storage quota; absent when unlimited.",
        "# TYPE dockyard_project_quota_limit_bytes gauge",
    ]
    lines += [
        f'dockyard_project_quota_limit_bytes{{project="{q.project}"}} {q.limit_bytes}'
        for q in quotas
        if q.limit_bytes is not None
    ]
    return ("\n".join(lines) + "\n").encode()
