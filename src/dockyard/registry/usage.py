"""Keeping project quota usage exact when content leaves a project (see projects.quotas).

`release(connection, project_id, digests)` is the one call for every code path that deletes blob
links (`repository_blobs`) or manifests of a project's repositories: blob DELETE, manifest DELETE,
repository deletes and garbage collection. Call it in the same transaction, after the deletes, with
the digests of what was deleted; it stops counting those no repository of the project still links
or holds, and returns the bytes freed.

Why the locks come before the check: a concurrent push that links the same digest into another
repository of the project either finds it counted, and then holds a share lock on its count row
(`project_blobs`) until it commits, or does not, and then takes the project's lock to count it. This
takes the project's lock, then the count rows' (FOR UPDATE), and only then reads what is still
linked: so one of the two always sees the other's committed rows (never both "still used" and "not
counted"). On SQLite one write transaction runs at a time.

Lock order: every writer takes row locks on blobs and manifests first and the project's row (and its
count rows) last (pushes share-lock the blobs a manifest references, then charge). So call `release`
at the end of the transaction, after the deletes and their row locks, and never lock more blob rows
after it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, select

from dockyard.projects.models import ProjectBlobRow
from dockyard.projects.quotas import lock_project, uncount
from dockyard.registry.models import Manifest, Repository, RepositoryBlob


def release(connection: Connection, project_id: int | None, digests: Collection[str]) -> int:
    """Bytes freed from the project's usage (0 when nothing is left unused, or no project)."""
    if project_id is None or not digests:
        return 0
    lock_project(connection, project_id)
    wanted = sorted(set(digests))
    # The count rows too, in digest order: a push that found one counted holds a share lock on it
    # until it commits (projects.quotas.charge), and its link must be seen below.
    counted = set(
        connection.scalars(
            select(ProjectBlobRow.digest)
            .where(ProjectBlobRow.project_id == project_id, ProjectBlobRow.digest.in_(wanted))
            .order_by(ProjectBlobRow.digest)
            .with_for_update()
        )
    )
    if not counted:
        return 0
    linked = set(
        connection.scalars(
            select(RepositoryBlob.digest)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(Repository.project_id == project_id, RepositoryBlob.digest.in_(counted))
        )
    )
    held = set(
        connection.scalars(
            select(Manifest.digest)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.project_id == project_id, Manifest.digest.in_(counted))
        )
    )
    return uncount(connection, project_id, counted - linked - held)


def project_of_repository(connection: Connection, repository_id: int) -> int | None:
    found = connection.scalar(select(Repository.project_id).where(Repository.id == repository_id))
    return None if found is None else int(found)
