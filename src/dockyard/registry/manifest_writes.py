"""The steps of storing and deleting a manifest that Registry runs inside its transactions: checking
what a manifest references, reading its platform, recording it with its references and quota
charge, and marking the blobs of a manifest about to go."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BindParameter,
    Connection,
    Select,
    String,
    any_,
    bindparam,
    func,
    select,
    true,
    update,
)

from dockyard.content import mediatypes
from dockyard.content.manifest import ParsedManifest
from dockyard.db.base import UTCDateTime, utcnow
from dockyard.db.dialect import insert_for
from dockyard.db.statements import DriverStatement
from dockyard.errors import ManifestBlobUnknown, ManifestInvalid
from dockyard.projects.quotas import COUNTED, Quotas
from dockyard.registry.models import Manifest, ManifestReference, Repository, RepositoryBlob, Tag
from dockyard.registry.repository_writes import RepositoryRow, create_repository, ensure_repository
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


def lock_blobs(
    connection: Connection, name: str, parsed: ParsedManifest
) -> tuple[RepositoryRow, dict[str, int]]:
    """The repository `name` (created when missing) and the sizes of the manifest's blobs that are live,
    their rows share-locked. PostgreSQL: garbage collection and a blob DELETE lock a blob's row before
    they tombstone it or unlink it, so this manifest either sees the blob gone or keeps it (docs/gc.md);
    the tombstone test is on the locked row, which PostgreSQL reads again once the other commits. SQLite:
    writes are serial. The repository comes with the blobs, in the same statement (a round trip less)."""
    digests = {d.digest for d in parsed.blobs}
    if not digests:
        return ensure_repository(connection, name), {}
    values = {"repository": name, **_numbered(digests)}
    rows = _repository_and_live_blobs(len(digests)).execute(connection, values).all()
    if not rows:  # no such repository yet, and nothing locked
        repository = create_repository(connection, name)
        rows = _live_blobs(len(digests)).execute(connection, _numbered(digests)).all()
        return repository, {digest: size for digest, size in rows}
    repository = RepositoryRow(rows[0].repository_id, rows[0].project_id, False)
    return repository, {row.digest: row.size for row in rows if row.digest is not None}


def check_references(
    connection: Connection,
    repository_id: int,
    parsed: ParsedManifest,
    sizes: dict[str, int],
    links_later: bool = False,
) -> bool:
    """ManifestBlobUnknown unless every blob and child manifest is in the repository; ManifestInvalid
    when a descriptor's size is not the blob's or the child manifest's. `sizes`: the live blobs of the
    manifest, locked (`lock_blobs`). `links_later` (PostgreSQL): when every blob is live, leave the
    blobs' links to the manifest's own statement (`store_manifest(links=sizes)`, a round trip less)
    and return True; False when they were checked here."""
    blob_digests = {d.digest for d in parsed.blobs}
    later = links_later and bool(blob_digests) and blob_digests <= sizes.keys()
    if blob_digests and not later:
        check_links(parsed, sizes, _linked(connection, repository_id, sizes))
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
    return later


def check_links(parsed: ParsedManifest, sizes: dict[str, int], linked_digests: set[str]) -> None:
    """The blob part of `check_references`, given the manifest's blobs linked to the repository."""
    linked = {digest: size for digest, size in sizes.items() if digest in linked_digests}
    missing = sorted({d.digest for d in parsed.blobs} - linked.keys())
    if missing:
        raise ManifestBlobUnknown(detail={"digest": missing[0], "missing": missing})
    for descriptor in parsed.blobs:
        if linked[descriptor.digest] != descriptor.size:
            raise ManifestInvalid(
                f"descriptor for {descriptor.digest} says {descriptor.size} bytes; the blob has "
                f"{linked[descriptor.digest]}",
                detail={"digest": descriptor.digest},
            )


def _linked(connection: Connection, repository_id: int, sizes: dict[str, int]) -> set[str]:
    """Which of the live blobs are linked to the repository: in a new statement (a fresh snapshot under
    READ COMMITTED), after the locks, so an unlink committed while this waited is seen."""
    if not sizes:
        return set()
    values = {"repository_id": repository_id, **_numbered(sizes)}
    return {row[0] for row in _links(len(sizes)).execute(connection, values).all()}


# The reference checks, built once per number of digests (a manifest names a handful): a list of
# plain parameters, not an expanding IN, which SQLAlchemy would rewrite on every execution; run on the
# driver connection, in the PUT's transaction (db.statements).
def _numbered(digests: Iterable[str]) -> dict[str, str]:
    return {f"digest_{index}": digest for index, digest in enumerate(digests)}


def _digest_parameters(count: int) -> list[BindParameter[str]]:
    return [bindparam(f"digest_{index}", type_=String) for index in range(count)]


def _live_blobs_query(count: int) -> Select:
    return (
        select(Blob.digest, Blob.size)
        .where(Blob.digest.in_(_digest_parameters(count)), live())
        .order_by(Blob.digest)
        .with_for_update(read=True, key_share=True)
    )


@functools.lru_cache(maxsize=64)
def _live_blobs(count: int) -> DriverStatement:
    return DriverStatement(_live_blobs_query(count))


@functools.lru_cache(maxsize=64)
def _repository_and_live_blobs(count: int) -> DriverStatement:
    """The repository's id and project with each live blob locked (no row: no such repository; one
    with a NULL digest: none of the blobs is live). The blobs' subquery keeps its locks and their order."""
    repository = (
        select(Repository.id.label("repository_id"), Repository.project_id)
        .where(Repository.name == bindparam("repository"))
        .subquery("repository")
    )
    locked = _live_blobs_query(count).subquery("locked")
    return DriverStatement(
        select(
            repository.c.repository_id, repository.c.project_id, locked.c.digest, locked.c.size
        ).select_from(repository.outerjoin(locked, true()))
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
    tag: str | None = None,
    links: dict[str, int] | None = None,
) -> int:
    """The manifest's id: a new row with its references, charged to the project's quota, or the
    existing row's; with `tag` set to it when given. The INSERT comes first (a new manifest, what most
    PUTs bring, is not looked for first); one that finds the manifest there inserts nothing, and the
    row is then read share-locked. On PostgreSQL a new manifest's row, its references, the tag and the
    charge's first look (its count row, share-locked) are one statement (`_store_new`), which also
    reads which of `links` (the live blobs whose links `check_references(links_later=True)` left to
    it) the repository links: checked before the charge (`check_links`: raising rolls it all back)."""
    now = utcnow()
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
        "created_at": now,
        "platform": platform or None,  # SQL NULL when unknown (the driver passes None as it is)
    }
    kinds = {(d.digest, "blob"): None for d in parsed.blobs}
    kinds.update({(d.digest, "manifest"): None for d in parsed.manifests})
    tagged = {"tag": tag, "updated_at": now}
    if connection.dialect.name == "postgresql":
        listed = {
            "reference_digests": [d for d, _ in kinds],
            "reference_kinds": [k for _, k in kinds],
            "linked_digests": sorted(links or ()),
        }
        counted = {"counted_project": repository.project_id, "counted_digest": digest}
        row = (
            _store_new(tag is not None).execute(connection, {**values, **listed, **counted, **tagged}).first()
        )
        if links is not None:  # this statement's snapshot is taken after the blobs' locks, as _links's
            linked = set(row.linked or ()) if row is not None else _linked(connection, repository.id, links)
            check_links(parsed, links, linked)
        if row is not None:
            if repository.project_id is not None:  # manifests count in quotas too (see projects.quotas)
                found = row.counted is not None
                quotas.charge(connection, repository.project_id, digest, len(body), "manifest", found)
            return int(row.id)
        manifest_id, new = _insert_or_find(connection, values, insert_first=False)
    else:
        manifest_id, new = _insert_or_find(connection, values, insert_first=True)
    if new:
        references = [{"manifest_id": manifest_id, "digest": d, "kind": k} for d, k in kinds]
        _REFERENCE.execute_many(connection, references)
        if repository.project_id is not None:  # manifests count in quotas too (see projects.quotas)
            quotas.charge(connection, repository.project_id, digest, len(body), what="manifest")
    if tag is not None:
        values = {"repository_id": repository.id, "name": tag, "manifest_id": manifest_id, "updated_at": now}
        _SET_TAG.execute(connection, values)
    return manifest_id


def _insert_or_find(connection: Connection, values: dict[str, Any], insert_first: bool) -> tuple[int, bool]:
    """(the manifest's id, whether this inserted it). There already (PostgreSQL: also once a push of it
    in flight committed): its row, share-locked. Gone again by the look (garbage collection deleted it
    in between: PostgreSQL): inserted after all."""
    key = {"repository_id": values["repository_id"], "digest": values["digest"]}
    for attempt in range(_TRIES):
        if insert_first or attempt:
            inserted = _INSERT.execute(connection, values).first()
            if inserted is not None:
                return int(inserted[0]), True
        existing = _EXISTING.execute(connection, key).scalar()
        if existing is not None:
            return int(existing), False
    return int(_INSERT.execute(connection, values).one()[0]), True  # NoResultFound: a 500, never seen


# On the driver connection, in the PUT's transaction (db.statements).
_TRIES = 3
_MANIFEST_KEYS = (
    "repository_id",
    "digest",
    "media_type",
    "artifact_type",
    "subject_digest",
    "annotations",
    "size",
    "content",
    "created_at",
    "platform",
)
_EXISTING = DriverStatement(
    select(Manifest.id)
    .where(Manifest.repository_id == bindparam("repository_id"), Manifest.digest == bindparam("digest"))
    .with_for_update(read=True, key_share=True)  # against GC deleting it meanwhile
)
_INSERT = DriverStatement(
    lambda dialect: (
        insert_for(dialect, Manifest)
        .on_conflict_do_nothing(index_elements=["repository_id", "digest"])
        .returning(Manifest.id)
    ),
    column_keys=_MANIFEST_KEYS,
)
_REFERENCE = DriverStatement(
    lambda dialect: insert_for(dialect, ManifestReference).on_conflict_do_nothing(),
    column_keys=("manifest_id", "digest", "kind"),
)
# A tag set to a manifest (INSERT, or UPDATE of the tag's row).
_SET_TAG = DriverStatement(
    lambda dialect: _tag_upsert(insert_for(dialect, Tag)),
    column_keys=("repository_id", "name", "manifest_id", "updated_at"),
)


def _tag_upsert(statement: Any) -> Any:
    return statement.on_conflict_do_update(
        index_elements=["repository_id", "name"],
        set_={name: statement.excluded[name] for name in ("manifest_id", "updated_at")},
    )


@functools.cache
def _store_new(tagged: bool) -> DriverStatement:
    return DriverStatement(lambda dialect: _new_manifest_statement(dialect, tagged))


def _new_manifest_statement(dialect: str, tagged: bool) -> Select:
    """PostgreSQL: INSERT the manifest (nothing when it is there), and with the row it inserted, in CTEs
    of the same statement, its references (`reference_digests`, `reference_kinds`: arrays) and the
    tag; the main query returns the new row's id with its count row (NULL when the project counts it
    not), share-locked as `charge` would, and which of `linked_digests` the repository links (NULL
    for none). No row back: the manifest was there, nothing else done.

    In the order of the statements this replaces, as far as other transactions can tell: the count
    row is locked after the manifest's INSERT (the main query reads its CTE), and the tag's upsert runs
    after the lock (a CTE nobody reads runs once the main query is done), as do the references (rows of
    a manifest nobody else sees yet). The foreign keys' checks of the INSERTs come at the end of the
    statement: they share-lock the repository's row (no writer locks one otherwise: repositories are
    not deleted row by row) and the new manifest's."""
    columns = Manifest.__table__.c
    inserted = (
        insert_for(dialect, Manifest)
        .values({name: bindparam(name, type_=columns[name].type) for name in _MANIFEST_KEYS})
        .on_conflict_do_nothing(index_elements=["repository_id", "digest"])
        .returning(Manifest.id)
        .cte("inserted")
    )
    listed = (
        func.unnest(
            bindparam("reference_digests", type_=ARRAY(String)),
            bindparam("reference_kinds", type_=ARRAY(String)),
        )
        .table_valued("digest", "kind")
        .render_derived(name="listed")
    )
    references = (
        insert_for(dialect, ManifestReference)
        .from_select(
            ["manifest_id", "digest", "kind"],
            select(inserted.c.id, listed.c.digest, listed.c.kind).select_from(inserted.join(listed, true())),
        )
        .on_conflict_do_nothing()
        .cte("referenced")
    )
    counted = COUNTED.scalar_subquery()
    linked = (  # the links `check_references` left to this statement (none: NULL)
        select(func.array_agg(RepositoryBlob.digest))
        .where(
            RepositoryBlob.repository_id == bindparam("repository_id", type_=columns["repository_id"].type),
            RepositoryBlob.digest == any_(bindparam("linked_digests", type_=ARRAY(String))),
        )
        .scalar_subquery()
    )
    statement = select(inserted.c.id, counted.label("counted"), linked.label("linked")).add_cte(references)
    if not tagged:
        return statement
    tag_row = select(
        bindparam("repository_id", type_=columns["repository_id"].type),
        bindparam("tag", type_=String),
        inserted.c.id,
        bindparam("updated_at", type_=UTCDateTime),
    )
    tag = _tag_upsert(
        insert_for(dialect, Tag).from_select(["repository_id", "name", "manifest_id", "updated_at"], tag_row)
    ).cte("tagged")
    return statement.add_cte(tag)


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
