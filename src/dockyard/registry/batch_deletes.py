"""Deleting many tags and untagged manifests of one repository in one transaction (`Registry.delete_batch`).

For callers that decided what to delete a moment earlier (retention): each request names what the tag
must still point at, or the manifest that must still be untagged, and whatever changed since is left
alone and said so. The rules of a single DELETE hold: immutable tags stay, the blobs of a deleted
manifest are stamped for garbage collection's window, and quota usage is released in the same
transaction.

Lock order on PostgreSQL: manifest rows in id order (as garbage collection), then blob rows in digest
order, the project's row (`release`, registry.usage), then tag rows. A push locks a manifest before its
tag, so taking tags first could deadlock with a push tagging a manifest this batch deletes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, delete, select

from dockyard.registry.manifest_writes import stamp_unreferenced
from dockyard.registry.models import Manifest, ManifestReference, Repository, Tag
from dockyard.registry.usage import project_of_repository, release


class BatchOutcome(StrEnum):
    DELETED = "deleted"
    IMMUTABLE = "immutable"  # an immutable tag: kept
    CHANGED = "changed"  # the tag points elsewhere now, or the manifest got a tag or a parent index
    GONE = "gone"  # already deleted


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete `tag` while it still points at `digest`; with no tag, the manifest `digest` while it is
    still untagged and no index of the repository lists it."""

    tag: str | None
    digest: str


@dataclass(frozen=True, slots=True)
class DeleteResult:
    request: DeleteRequest
    outcome: BatchOutcome
    detail: str = ""  # for IMMUTABLE: the registry's message naming the rule


def delete_in_repository(
    connection: Connection,
    repository: str,
    requests: Sequence[DeleteRequest],
    immutable: Mapping[str, str],
) -> list[DeleteResult]:
    """Carry out `requests` on `connection` (the caller's write transaction); results in request
    order. `immutable` maps each immutable tag among them to the message saying why it stays."""
    repository_id = connection.scalar(select(Repository.id).where(Repository.name == repository))
    if repository_id is None:
        return [DeleteResult(request, BatchOutcome.GONE) for request in requests]
    outcomes: dict[DeleteRequest, DeleteResult] = {}
    tag_requests = [request for request in requests if request.tag is not None]
    manifest_requests = [request for request in requests if request.tag is None]
    if manifest_requests:
        outcomes.update(_delete_untagged(connection, repository_id, manifest_requests))
    if tag_requests:
        outcomes.update(_delete_tags(connection, repository_id, tag_requests, immutable))
    return [outcomes[request] for request in requests]


def _delete_tags(
    connection: Connection, repository_id: int, requests: list[DeleteRequest], immutable: Mapping[str, str]
) -> dict[DeleteRequest, DeleteResult]:
    names = sorted({request.tag for request in requests if request.tag is not None})
    rows = connection.execute(
        select(Tag.name, Manifest.digest)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .where(Tag.repository_id == repository_id, Tag.name.in_(names))
        .order_by(Tag.name)
        .with_for_update(of=Tag)  # PostgreSQL: a concurrent PUT of one of them waits for this
    )
    current = {name: digest for name, digest in rows}
    results: dict[DeleteRequest, DeleteResult] = {}
    doomed: list[str] = []
    for request in requests:
        assert request.tag is not None
        target = current.get(request.tag)
        if target is None:
            results[request] = DeleteResult(request, BatchOutcome.GONE)
        elif target != request.digest:
            results[request] = DeleteResult(request, BatchOutcome.CHANGED)
        elif request.tag in immutable:
            results[request] = DeleteResult(request, BatchOutcome.IMMUTABLE, immutable[request.tag])
        else:
            results[request] = DeleteResult(request, BatchOutcome.DELETED)
            doomed.append(request.tag)
    if doomed:
        connection.execute(delete(Tag).where(Tag.repository_id == repository_id, Tag.name.in_(doomed)))
    return results


def _delete_untagged(
    connection: Connection, repository_id: int, requests: list[DeleteRequest]
) -> dict[DeleteRequest, DeleteResult]:
    digests = sorted({request.digest for request in requests})
    # Locked, so a push that would tag one or list it in an index waits for this transaction.
    found = {
        digest: manifest_id
        for manifest_id, digest in connection.execute(
            select(Manifest.id, Manifest.digest)
            .where(Manifest.repository_id == repository_id, Manifest.digest.in_(digests))
            .order_by(Manifest.id)
            .with_for_update()
        )
    }
    tagged = set(connection.scalars(select(Tag.manifest_id).where(Tag.manifest_id.in_(found.values()))))
    listed = set(
        connection.scalars(
            select(ManifestReference.digest)
            .join(Manifest, Manifest.id == ManifestReference.manifest_id)
            .where(
                Manifest.repository_id == repository_id,
                ManifestReference.kind == "manifest",
                ManifestReference.digest.in_(found.keys()),
            )
        )
    )
    results: dict[DeleteRequest, DeleteResult] = {}
    doomed: dict[str, int] = {}
    for request in requests:
        manifest_id = found.get(request.digest)
        if manifest_id is None:
            results[request] = DeleteResult(request, BatchOutcome.GONE)
        elif manifest_id in tagged or request.digest in listed:
            results[request] = DeleteResult(request, BatchOutcome.CHANGED)
        else:
            results[request] = DeleteResult(request, BatchOutcome.DELETED)
            doomed[request.digest] = manifest_id
    if doomed:
        ids = sorted(doomed.values())
        stamp_unreferenced(connection, ids)
        connection.execute(delete(Manifest).where(Manifest.id.in_(ids)))
        release(connection, project_of_repository(connection, repository_id), sorted(doomed))
    return results
