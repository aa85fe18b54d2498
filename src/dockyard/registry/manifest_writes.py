"""The steps of storing and deleting a manifest that Registry runs inside its transactions: checking
what a manifest references, reading its platform, recording it with its references and quota
charge, and marking the blobs of a manifest about to go."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable

from sqlalchemy import JSON, BindParameter, Connection, String, bindparam, select, update

from dockyard.content import mediatypes
from dockyard.content.manifest import ParsedManifest
from dockyard.db.base import utcnow
from dockyard.db.dialect import insert_for
from dockyard.db.statements import DriverStatement
from dockyard.errors import ManifestBlobUnknown, ManifestInvalid
from dockyard.projects.quotas import Quotas
from dockyard.registry.models import Manifest, ManifestReference, RepositoryBlob
from dockyard.registry.repository_writes import RepositoryRow
from dockyard.storage.blobs import BlobStore, live
from dockyard.storage.models import Blob

log = logging.getLogger("dockyard.registry")

# Configs that describe a runnable image, and so carry its os/architecture/variant.
IMAGE_CONFIGS = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})
MAX_CONFIG_READ = 1024 * 1024  # an image config is a few KiB; a bigger one is not read for its platform
# Platforms read from configs, by the config's digest (content-addressed: what it says never changes),
# so pushes of one image into many repositories read its config from storage once per process.
MAX_PLATFORMS = 4096
_platforms: dict[str, dict[str, str]] = {}


def check_references(connection: Connection, repository_id: int, parsed: ParsedManifest) -> None:
    """ManifestBlobUnknown unless every blob and child manifest is in the repository; ManifestInvalid
    when a descriptor's size is not the blob's or the child manifest's."""
    blob_digests = {d.digest for d in parsed.blobs}
    if blob_digests:
        # PostgreSQL: garbage collection and a blob DELETE lock a blob's row before they tombstone it or
        # unlink it, so this manifest either sees the blob gone or keeps it (docs/gc.md); the tombstone
        # test is on the locked row, which PostgreSQL reads again once the other commits. SQLite: writes
        # are serial.
        rows = _live_blobs(len(blob_digests)).execute(connection, _numbered(blob_digests)).all()
        sizes = {digest: size for digest, size in rows}
        # The links in a new statement (a fresh snapshot under READ COMMITTED), after the locks: an
        # unlink committed while this waited is seen.
        linked_digests: set[str] = set()
        if sizes:
            values = {"repository_id": repository_id, **_numbered(sizes)}
            linked_digests = {row[0] for row in _links(len(sizes)).execute(connection, values).all()}
        linked = {digest: size for digest, size in sizes.items() if digest in linked_digests}
        missing = sorted(blob_digests - linked.keys())
        if missing:
            raise ManifestBlobUnknown(detail={"digest": missing[0], "missing": missing})
        for descriptor in parsed.blobs:
            if linked[descriptor.digest] != descriptor.size:
                raise ManifestInvalid(
                    f"descriptor for {descriptor.digest} says {descriptor.size} bytes; the blob has "
                    f"{linked[descriptor.digest]}",
                    detail={"digest": descriptor.digest},
                )
    child_digests = {d.digest for d in parsed.manifests}
    if child_digests:
        values = {"repository_id": repository_id, **_numbered(child_digests)}
        rows = _children(len(child_digests)).execute(connection, values).all()
        present = {digest: size for digest, size in rows}
        missing = sorted(child_digests - present.keys())
        if missing:
            raise ManifestBlobUnknown(
                "manifest references a manifest unknown to the repository",
                detail={"digest": missing[0], "missing": missing},
            )
        for child in parsed.manifests:
            if present[child.digest] != child.size:
                raise ManifestInvalid(
                    f"descriptor for manifest {child.digest} says {child.size} bytes; the manifest has "
                    f"{present[child.digest]}",
                    detail={"digest": child.digest},
                )


# The reference checks, built once per number of digests (a manifest names a handful): a list of
# plain parameters, not an expanding IN, which SQLAlchemy would rewrite on every execution; run on the
# driver connection, in the PUT's transaction (db.statements).
def _numbered(digests: Iterable[str]) -> dict[str, str]:
    return {f"digest_{index}": digest for index, digest in enumerate(digests)}


def _digest_parameters(count: int) -> list[BindParameter[str]]:
    return [bindparam(f"digest_{index}", type_=String) for index in range(count)]


@functools.lru_cache(maxsize=64)
def _live_blobs(count: int) -> DriverStatement:
    return DriverStatement(
        select(Blob.digest, Blob.size)
        .where(Blob.digest.in_(_digest_parameters(count)), live())
        .order_by(Blob.digest)
        .with_for_update(read=True, key_share=True)
    )


@functools.lru_cache(maxsize=64)
def _links(count: int) -> DriverStatement:
    return DriverStatement(
        select(RepositoryBlob.digest).where(
            RepositoryBlob.repository_id == bindparam("repository_id"),
            RepositoryBlob.digest.in_(_digest_parameters(count)),
        )
    )


@functools.lru_cache(maxsize=64)
def _children(count: int) -> DriverStatement:
    return DriverStatement(
        select(Manifest.digest, Manifest.size)
        .where(
            Manifest.repository_id == bindparam("repository_id"),
            Manifest.digest.in_(_digest_parameters(count)),
        )
        .order_by(Manifest.digest)
        .with_for_update(read=True, key_share=True)  # against GC, as for blobs above
    )


def platform_of(blobs: BlobStore, parsed: ParsedManifest) -> dict[str, str] | None:
    """os, architecture and variant from an image's config blob; None when there is no image
    config or it cannot be read. Never fails the push: the platform is for listings only."""
    config = parsed.config
    if config is None or config.media_type not in IMAGE_CONFIGS or config.size > MAX_CONFIG_READ:
        return None
    found = _platforms.get(config.digest)
    if found is not None:
        return dict(found)
    platform = _read_platform(blobs, config.digest)
    if platform is not None:  # a config not read (not there yet, a driver error) is read again next time
        if len(_platforms) >= MAX_PLATFORMS:
            _platforms.clear()
        _platforms[config.digest] = dict(platform)
    return platform


def _read_platform(blobs: BlobStore, digest: str) -> dict[str, str] | None:
    try:
        with blobs.open(digest) as stream:
            data = stream.read(MAX_CONFIG_READ + 1)
        document = json.loads(data) if len(data) <= MAX_CONFIG_READ else None
    except Exception:  # missing blob (the reference check reports it), driver error, bad JSON
        log.debug("no platform from config %s", digest, exc_info=True)
        return None
    if not isinstance(document, dict):
        return None
    platform = {
        key: value
        for key in ("os", "architecture", "variant")
        if isinstance(value := document.get(key), str) and value
    }
    return platform or None


def store_manifest(
    connection: Connection,
    quotas: Quotas,
    repository: RepositoryRow,
    digest: str,
    body: bytes,
    parsed: ParsedManifest,
    platform: dict[str, str] | None,
) -> int:
    """The manifest's id: a new row with its references, charged to the project's quota, or the
    existing row's. The INSERT comes first (a new manifest, what most PUTs bring, costs one statement,
    not a look and an INSERT); one that finds the manifest there inserts nothing, and the row is then
    read share-locked, as before."""
    values = {
        "repository_id": repository.id,
        "digest": digest,
        "media_type": parsed.media_type,
        "artifact_type": parsed.artifact_type,
        "subject_digest": parsed.subject.digest if parsed.subject else None,
        # JSON null when there are none, as a Connection stores None in a JSON column.
        "annotations": parsed.annotations or JSON.NULL,
        "size": len(body),
        "content": body,
        "created_at": utcnow(),
        "platform": platform or None,  # SQL NULL when unknown (the driver passes None as it is)
    }
    key = {"repository_id": repository.id, "digest": digest}
    for _ in range(_TRIES):
        inserted = _INSERT.execute(connection, values).first()
        if inserted is not None:
            break
        # There already (PostgreSQL: also once a push of it in flight committed). Gone again by the
        # look (garbage collection deleted it in between: PostgreSQL): insert it after all.
        existing = _EXISTING.execute(connection, key).scalar()
        if existing is not None:
            return int(existing)
    else:
        inserted = _INSERT.execute(connection, values).one()  # NoResultFound: a 500, never seen
    manifest_id = inserted[0]
    references = [{"manifest_id": manifest_id, "digest": d.digest, "kind": "blob"} for d in parsed.blobs]
    references += [
        {"manifest_id": manifest_id, "digest": d.digest, "kind": "manifest"} for d in parsed.manifests
    ]
    unique = {(r["digest"], r["kind"]): r for r in references}
    _REFERENCE.execute_many(connection, list(unique.values()))
    if repository.project_id is not None:  # manifests count in quotas too (see projects.quotas)
        quotas.charge(connection, repository.project_id, digest, len(body), what="manifest")
    return int(manifest_id)


# On the driver connection, in the PUT's transaction (db.statements).
_TRIES = 3
_EXISTING = DriverStatement(
    select(Manifest.id)
    .where(Manifest.repository_id == bindparam("repository_id"), Manifest.digest == bindparam("digest"))
    .with_for_update(read=True, key_share=True)  # against GC deleting it meanwhile
)
_INSERT = DriverStatement(
    lambda dialect: insert_for(dialect, Manifest)
    .on_conflict_do_nothing(index_elements=["repository_id", "digest"])
    .returning(Manifest.id),
    column_keys=(
        "repository_id", "digest", "media_type", "artifact_type", "subject_digest", "annotations", "size",
        "content", "created_at", "platform",
    ),
)
_REFERENCE = DriverStatement(
    lambda dialect: insert_for(dialect, ManifestReference).on_conflict_do_nothing(),
    column_keys=("manifest_id", "digest", "kind"),
)


def stamp_unreferenced(connection: Connection, manifest_ids: list[int]) -> None:
    """The blobs of manifests about to go may have lost their last reference: garbage collection keeps
    them for its safety window from now (docs/gc.md)."""
    referenced = sorted(
        set(
            connection.scalars(
                select(ManifestReference.digest).where(
                    ManifestReference.manifest_id.in_(manifest_ids), ManifestReference.kind == "blob"
                )
            )
        )
    )
    if not referenced:
        return
    # PostgreSQL: in digest order, as garbage collection locks them, so the two never deadlock.
    connection.execute(
        select(Blob.digest)
        .where(Blob.digest.in_(referenced))
        .order_by(Blob.digest)
        .with_for_update(key_share=True)
    )
    connection.execute(update(Blob).where(Blob.digest.in_(referenced)).values(unreferenced_at=utcnow()))
