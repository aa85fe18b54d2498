"""Sweep manifests: read one repository's graph, mark (gc.marking), delete the garbage in batches.

A batch's transaction locks its rows (PostgreSQL: FOR UPDATE; a manifest PUT that lists a child
or re-tags an existing manifest share-locks that row), then checks each again with a fresh
snapshot: still no tag (unless it goes with its subject), no index outside the batch lists it, and
its subject is gone (referrers that go with it) or untagged. What fails a check stays, with
whatever in the batch it would keep (an index's children, a subject's referrers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import aliased

from dockyard.db.session import Database
from dockyard.gc.marking import ManifestNode, MarkRules, garbage
from dockyard.registry.models import Manifest, ManifestReference, Repository, Tag
from dockyard.registry.usage import project_of_repository, release


@dataclass(frozen=True)
class RepositoryGarbage:
    repository_id: int
    name: str
    manifests: list[ManifestNode]  # parents and subjects first


class ManifestSweeper:
    def __init__(self, db: Database) -> None:
        self._db = db

    def mark(self, rules: MarkRules) -> list[RepositoryGarbage]:
        """Every repository's garbage manifests (repositories with none are left out)."""
        with self._db.read() as connection:
            repositories = connection.execute(
                select(Repository.id, Repository.name).order_by(Repository.id)
            ).all()
        found = []
        for repository in repositories:
            with self._db.read() as connection:
                nodes = _graph(connection, repository.id)
            dead = garbage(nodes, rules)
            if dead:
                found.append(RepositoryGarbage(repository.id, repository.name, dead))
        return found

    def delete_batch(
        self, repository_id: int, batch: list[ManifestNode], rules: MarkRules
    ) -> list[ManifestNode]:
        """Delete those of `batch` (one repository's) that are still garbage; returns them."""
        ids = [node.id for node in batch]
        with self._db.write() as connection:
            connection.execute(
                select(Manifest.id).where(Manifest.id.in_(ids)).order_by(Manifest.id).with_for_update()
            )
            found = {node.id: node for node in _nodes(connection, repository_id, ids)}
            current = {node_id: found[node_id] for node_id in ids if node_id in found}  # marking's order
            doomed = _still_garbage(connection, repository_id, current, rules)
            if doomed:
                connection.execute(delete(Manifest).where(Manifest.id.in_([node.id for node in doomed])))
                # Quota usage, in this transaction and after the manifest row locks (registry.usage).
                project_id = project_of_repository(connection, repository_id)
                release(connection, project_id, [node.digest for node in doomed])
        return doomed


def _graph(connection: Connection, repository_id: int) -> list[ManifestNode]:
    return _nodes(connection, repository_id, None)


def _nodes(connection: Connection, repository_id: int, ids: list[int] | None) -> list[ManifestNode]:
    """The repository's manifests (or those of `ids` still there) with tags and listed children."""
    query = select(
        Manifest.id, Manifest.digest, Manifest.subject_digest, Manifest.created_at, Manifest.size
    ).where(Manifest.repository_id == repository_id)
    tags = select(Tag.manifest_id).where(Tag.repository_id == repository_id).distinct()
    children = (
        select(ManifestReference.manifest_id, ManifestReference.digest)
        .join(Manifest, Manifest.id == ManifestReference.manifest_id)
        .where(Manifest.repository_id == repository_id, ManifestReference.kind == "manifest")
    )
    if ids is not None:
        query = query.where(Manifest.id.in_(ids))
        tags = tags.where(Tag.manifest_id.in_(ids))
        children = children.where(ManifestReference.manifest_id.in_(ids))
    tagged = set(connection.scalars(tags))
    listed: dict[int, list[str]] = {}
    for manifest_id, digest in connection.execute(children):
        listed.setdefault(manifest_id, []).append(digest)
    return [
        ManifestNode(
            id=row.id,
            digest=row.digest,
            subject=row.subject_digest,
            tagged=row.id in tagged,
            created_at=row.created_at,
            size=int(row.size),
            children=tuple(listed.get(row.id, ())),
        )
        for row in connection.execute(query)
    ]


def _still_garbage(
    connection: Connection, repository_id: int, batch: dict[int, ManifestNode], rules: MarkRules
) -> list[ManifestNode]:
    if not batch:
        return []
    ids = list(batch)
    digests = {node.digest for node in batch.values()}
    subjects = {node.subject for node in batch.values() if node.subject is not None}
    parent = aliased(Manifest)
    listed_outside = set(
        connection.scalars(
            select(ManifestReference.digest)
            .join(parent, parent.id == ManifestReference.manifest_id)
            .where(
                parent.repository_id == repository_id,
                parent.id.not_in(ids),
                ManifestReference.kind == "manifest",
                ManifestReference.digest.in_(digests),
            )
        )
    )
    subjects_outside = _subjects_outside(connection, repository_id, ids, subjects)
    kept = {
        node.id
        for node in batch.values()
        if not _passes(node, rules, node.digest in listed_outside, subjects_outside)
    }
    _keep_what_kept_ones_keep(batch, kept)
    return [node for node in batch.values() if node.id not in kept]


def _passes(node: ManifestNode, rules: MarkRules, listed_outside: bool, subjects: dict[str, bool]) -> bool:
    """Whether this batch member is still garbage, judged by what lies outside the batch."""
    if node.created_at >= rules.cutoff or listed_outside:
        return False
    if rules.bound_to_subject(node):
        return node.subject not in subjects  # goes with its subject: only once that is gone
    if node.tagged or not rules.delete_untagged:
        return False
    return not (node.subject is not None and subjects.get(node.subject, False))  # a tagged subject keeps it


def _subjects_outside(
    connection: Connection, repository_id: int, ids: list[int], subjects: set[str]
) -> dict[str, bool]:
    """Subject digest -> whether it is tagged, for the subjects present outside the batch."""
    if not subjects:
        return {}
    tagged = select(Tag.manifest_id).where(Tag.manifest_id == Manifest.id).exists()
    rows = connection.execute(
        select(Manifest.digest, tagged.label("tagged")).where(
            Manifest.repository_id == repository_id, Manifest.id.not_in(ids), Manifest.digest.in_(subjects)
        )
    )
    found: dict[str, bool] = {}
    for row in rows:
        found[row.digest] = found.get(row.digest, False) or bool(row.tagged)
    return found


def _keep_what_kept_ones_keep(batch: dict[int, ManifestNode], kept: set[int]) -> None:
    """A member that stays keeps the members it lists and the members that refer to it."""
    by_digest = {node.digest: node for node in batch.values()}
    pending = list(kept)
    while pending:
        node = batch[pending.pop()]
        also: Iterable[ManifestNode] = [by_digest[d] for d in node.children if d in by_digest]
        also = [*also, *(other for other in batch.values() if other.subject == node.digest)]
        for other in also:
            if other.id not in kept:
                kept.add(other.id)
                pending.append(other.id)
