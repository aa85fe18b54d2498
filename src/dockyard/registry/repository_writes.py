"""What every push's write transaction starts with: the repository it writes to (created on the first
push, with its project), and linking a blob into it with the project's quota charge.

These run on every mount, blob commit and manifest PUT, so the statements are built once (building
one costs several times what running it does) and no statement reads back what the transaction
knows already: the repository's project comes with its id.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import Connection, Select, String, bindparam, func, select
from sqlalchemy.sql.dml import Insert

from dockyard.db.base import UTCDateTime, utcnow
from dockyard.db.dialect import insert_for, insert_ignore
from dockyard.db.statements import DriverStatement
from dockyard.projects.models import ProjectRow
from dockyard.projects.quotas import COUNTED, Quotas
from dockyard.projects.rbac import project_of
from dockyard.registry.models import Repository, RepositoryBlob


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    id: int
    project_id: int | None  # None only for rows written before projects existed (migration 0005)
    created: bool  # by this transaction: the caller bumps the change feed after its commit


# On the driver connection, in the caller's transaction (db.statements).
_BY_NAME = DriverStatement(
    select(Repository.id, Repository.project_id).where(Repository.name == bindparam("repository"))
)
_LINK = DriverStatement(
    lambda dialect: insert_for(dialect, RepositoryBlob).on_conflict_do_nothing(),
    column_keys=("repository_id", "digest", "created_at"),
)


def ensure_repository(connection: Connection, name: str) -> RepositoryRow:
    """The repository `name`, created (with its project, if that is new too) when missing. Whoever got
    this far may push here (the auth gate checked), so a missing project is created."""
    found = _BY_NAME.execute(connection, {"repository": name}).first()
    if found is not None:
        return RepositoryRow(found.id, found.project_id, False)
    return create_repository(connection, name)


def create_repository(connection: Connection, name: str) -> RepositoryRow:
    """The repository `name`, which the transaction did not find: created now (with its project, if
    that is new too), or found once more if another push created it meanwhile."""
    values = {"repository": name, "project": project_of(name), "now": utcnow()}
    created = _CREATE.execute(connection, values).first()
    if created is None:  # no such project yet, or (PostgreSQL) another push created the repository
        now = values["now"]
        project = {"name": values["project"], "public": False, "created_at": now, "updated_at": now}
        insert_ignore(connection, ProjectRow, project)
        created = _CREATE.execute(connection, values).first()
    if created is None:  # another transaction created it meanwhile (SQLite writers are serial)
        found = _BY_NAME.execute(connection, {"repository": name}).one()
        return RepositoryRow(found.id, found.project_id, False)
    return RepositoryRow(created.id, created.project_id, True)


def link_blob(
    connection: Connection, quotas: Quotas, repository: RepositoryRow, digest: str, size: int
) -> None:
    """Link the blob, and count it in the project's quota usage (QuotaExceeded: roll back)."""
    values = {"repository_id": repository.id, "digest": digest, "created_at": utcnow()}
    if repository.project_id is None:
        _LINK.execute(connection, values)
        return
    if connection.dialect.name == "postgresql":  # the link and the charge's first look: one round trip
        counted = {"counted_project": repository.project_id, "counted_digest": digest}
        found = _LINK_THEN_COUNTED.execute(connection, {**values, **counted})
        quotas.charge(connection, repository.project_id, digest, size, counted=found.first() is not None)
        return
    _LINK.execute(connection, values)
    quotas.charge(connection, repository.project_id, digest, size)


@functools.cache
def _create_in_project(dialect: str) -> Insert:
    """INSERT the repository into its existing project: no row inserted (nothing returned) when the
    project does not exist or the repository does (INSERT ... SELECT ... ON CONFLICT DO NOTHING)."""
    source = select(
        bindparam("repository", type_=String),
        bindparam("now", type_=UTCDateTime),
        ProjectRow.id,
    ).where(ProjectRow.name == bindparam("project"))
    columns = [Repository.name, Repository.created_at, Repository.project_id]
    insert = insert_for(dialect, Repository).from_select(columns, source)
    return insert.on_conflict_do_nothing().returning(Repository.id, Repository.project_id)


_CREATE = DriverStatement(_create_in_project)  # on the driver connection, as _BY_NAME


def _link_then_counted(dialect: str) -> Select:
    """PostgreSQL: the link (INSERT ... ON CONFLICT DO NOTHING, in a CTE), then the project's count row
    of the digest share-locked (projects.quotas.COUNTED): the charge's first look. The lock's condition
    counts the CTE's rows, so PostgreSQL runs the INSERT to its end before it locks (a CTE nobody reads
    runs after the main query: the lock first, which deadlocks with an unlink: registry.usage)."""
    link = (
        insert_for(dialect, RepositoryBlob)
        .values(
            repository_id=bindparam("repository_id"),
            digest=bindparam("digest", type_=String),
            created_at=bindparam("created_at", type_=UTCDateTime),
        )
        .on_conflict_do_nothing()
        .returning(RepositoryBlob.digest)
        .cte("link")
    )
    linked = select(func.count()).select_from(link).scalar_subquery()
    return COUNTED.where(linked >= 0)


_LINK_THEN_COUNTED = DriverStatement(_link_then_counted)  # values: the link's, and counted_project
