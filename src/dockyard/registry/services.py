"""The registry: repositories, manifests, tags, referrers and which blobs each repository may read.

Methods are synchronous (DB and storage I/O); the edge runs them in worker threads. The
`cached_*` methods do no I/O and may be called on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, String, bindparam, delete, exists, func, select, true
from sqlalchemy.orm import aliased

from dockyard.content.digest import Digest, digest_of, parse_digest
from dockyard.content.manifest import parse_manifest
from dockyard.content.reference import parse_reference, validate_name
from dockyard.coordination.caches import ENTRY_OVERHEAD, MIB, GenerationCache, KeyedGenerationCache
from dockyard.coordination.interfaces import (
    ChangeFeed,
    Topic,
    generation_of,
    keyed_generation_of,
    tag_generation_of,
    tag_key,
    tag_list_generation_of,
)
from dockyard.db.base import UTCDateTime, utcnow
from dockyard.db.dialect import bytewise, insert_for
from dockyard.db.lookups import InThread, Lookup
from dockyard.db.session import Database
from dockyard.db.statements import DriverStatement
from dockyard.errors import (
    BlobReferenced,
    BlobUnknown,
    DeleteDisabled,
    DigestInvalid,
    ManifestUnknown,
    NameUnknown,
    ReadOnly,
    TagInvalid,
)
from dockyard.projects.immutability import ImmutabilityRules, tag_immutable
from dockyard.projects.models import ProjectBlobRow, ProjectRow
from dockyard.projects.quotas import Quotas
from dockyard.registry.batch_deletes import BatchOutcome, DeleteRequest, DeleteResult, delete_in_repository
from dockyard.registry.interfaces import ManifestRecord, Page, PutManifestResult, ReferrerList
from dockyard.registry.manifest_writes import (
    check_references,
    lock_blobs,
    platform_of,
    stamp_unreferenced,
    store_manifest,
)
from dockyard.registry.models import Manifest, ManifestReference, Repository, RepositoryBlob, Tag
from dockyard.registry.repository_writes import RepositoryRow, create_repository, ensure_repository, link_blob
from dockyard.registry.usage import project_of_repository, release
from dockyard.storage.blobs import BlobStore, live
from dockyard.storage.models import Blob

DEFAULT_CACHE_BYTES = 32 * MIB
ListingKey = tuple[str, str | None, int | None, str | None]  # ("tags", name, ...) or ("catalog", ...)


class Registry:
    """Repositories, manifests, tags, referrers and blob links (uploads: registry.blob_uploads). The
    project policies every write goes through (quota charges, immutable tags) and the blob store are
    handed in by the composition root (`dockyard.services`): callers that need those use them directly."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        feed: ChangeFeed,
        quotas: Quotas,
        immutability: ImmutabilityRules,
        delete_enabled: bool = True,
        read_only: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._db = db
        self._quotas = quotas
        self._immutability = immutability
        self._blobs = blobs
        self._feed = feed
        self.delete_enabled = delete_enabled
        self.read_only = read_only
        # The read caches share `cache_bytes` (storage.cache.memory_mib) by what they hold: manifests by
        # tag, and by digest, tag lists, catalog pages, and blob sizes. What drops what (docs/ha.md):
        # - a tag pushed, moved or deleted (Topic.TAGS with the tag's key and the repository's name):
        #   that tag's lookups and the repository's tag lists;
        # - a manifest deleted, or a batch of deletes (Topic.MANIFESTS with the repository's name):
        #   the repository's lookups by tag and by digest and its tag lists; a collector deleting
        #   untagged manifests (Topic.UNTAGGED_DELETES with the name): its lookups by digest;
        # - a blob unlinked (Topic.BLOB_DELETES with the name): the repository's blob sizes;
        # - a repository created (Topic.REPOSITORIES): the catalog.
        # A push by digest changes no cached answer: it bumps nothing (unless it creates the repository).
        self._manifests_by_tag: KeyedGenerationCache[tuple[str, str], ManifestRecord] = KeyedGenerationCache(
            tag_generation_of(feed), cache_bytes * 4 // 10, _manifest_weight
        )
        self._manifests_by_digest: KeyedGenerationCache[tuple[str, str], ManifestRecord] = (
            KeyedGenerationCache(
                keyed_generation_of(feed, Topic.MANIFESTS, Topic.UNTAGGED_DELETES),
                cache_bytes * 2 // 10,
                _manifest_weight,
            )
        )
        self._tag_lists: KeyedGenerationCache[ListingKey, Page] = KeyedGenerationCache(
            tag_list_generation_of(feed, at=1), cache_bytes // 10, _page_weight
        )
        self._catalog: GenerationCache[ListingKey, Page] = GenerationCache(
            generation_of(feed, Topic.REPOSITORIES), cache_bytes // 10, _page_weight
        )
        self._blob_sizes: KeyedGenerationCache[tuple[str, str], int] = KeyedGenerationCache(
            keyed_generation_of(feed, Topic.BLOB_DELETES), cache_bytes * 2 // 10, _key_weight
        )
        lookups = db.lookups
        self._manifest_by_tag = lookups.prepare(_MANIFEST_BY_TAG)
        self._manifest_by_digest = lookups.prepare(_MANIFEST_BY_DIGEST)
        self._blob_size = lookups.prepare(_BLOB_SIZE)

    def caches(self) -> dict[str, GenerationCache[Any, Any] | KeyedGenerationCache[Any, Any]]:
        """The read caches by name, for their hit ratios on /metrics."""
        return {
            "manifests_by_tag": self._manifests_by_tag,
            "manifests_by_digest": self._manifests_by_digest,
            "listings": self._tag_lists,
            "catalog": self._catalog,
            "blob_sizes": self._blob_sizes,
        }

    # --- hot-path caches (no I/O) -------------------------------------------------------------
    def cached_manifest(self, name: str, reference: str) -> ManifestRecord | None:
        return self._manifest_cache(reference).get((name, reference))

    def cached_blob_size(self, name: str, digest: str) -> int | None:
        return self._blob_sizes.get((name, digest))

    def cached_listing(self, key: tuple[str, str | None, int | None, str | None]) -> Page | None:
        return self._catalog.get(key) if key[0] == "catalog" else self._tag_lists.get(key)

    # --- manifests ----------------------------------------------------------------------------
    def get_manifest(self, name: str, reference: str) -> ManifestRecord:
        values, lookup, cache, generation = self._manifest_lookup(name, reference)
        row = self._db.lookups.one(lookup, values)
        return self._found_manifest(name, reference, row, cache, generation)

    async def manifest_async(self, name: str, reference: str, in_thread: InThread) -> ManifestRecord:
        """get_manifest on the event loop, never blocking it (db.lookups `one_async`: on SQLite read on
        the loop at once, on PostgreSQL in the loop's pipelined batch; `in_thread` where the loop
        cannot run it). The name and reference are checked once, whichever way it runs."""
        values, lookup, cache, generation = self._manifest_lookup(name, reference)
        row = await self._db.lookups.one_async(lookup, values, in_thread)
        return self._found_manifest(name, reference, row, cache, generation)

    def _manifest_lookup(self, name: str, reference: str) -> tuple[dict[str, str], Lookup, Any, int]:
        validate_name(name)
        ref = _existing_reference(name, reference)
        cache = self._manifest_cache(reference)
        generation = cache.current_generation((name, reference))
        if isinstance(ref, Digest):
            return {"repository": name, "digest": str(ref)}, self._manifest_by_digest, cache, generation
        return {"repository": name, "tag": ref}, self._manifest_by_tag, cache, generation

    @staticmethod
    def _found_manifest(
        name: str, reference: str, row: tuple[Any, ...] | None, cache: Any, generation: int
    ) -> ManifestRecord:
        if row is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        digest, media_type, content = row
        record = ManifestRecord(digest, media_type, bytes(content))
        cache.put((name, reference), record, generation)
        return record

    def put_manifest(
        self, name: str, reference: str, body: bytes, content_type: str | None
    ) -> PutManifestResult:
        self._check_writable()
        validate_name(name)
        ref = parse_reference(reference)
        parsed = parse_manifest(body, content_type)
        algorithm = ref.algorithm if isinstance(ref, Digest) else "sha256"
        digest = digest_of(body, algorithm)
        if isinstance(ref, Digest) and str(ref) != digest:
            raise DigestInvalid(
                "manifest content does not match the digest in the URL",
                detail={"expected": str(ref), "computed": digest},
            )
        platform = platform_of(self._blobs, parsed)  # storage I/O, so before the write transaction
        rule = None if isinstance(ref, Digest) else self._immutability.rule_for(name, ref)  # cached
        tag = None if isinstance(ref, Digest) else str(ref)
        with self._db.write() as connection:
            repository, sizes = lock_blobs(connection, name, parsed)
            if rule is not None and self._tag_target(connection, repository.id, str(ref)) not in (
                None,
                digest,
            ):
                raise self._immutability.refusal(name, str(ref), rule, "push")
            # PostgreSQL: the blobs' links are read by the manifest's own statement (a round trip less).
            postgresql = connection.dialect.name == "postgresql"
            links = sizes if check_references(connection, repository.id, parsed, sizes, postgresql) else None
            store_manifest(connection, self._quotas, repository, digest, body, parsed, platform, tag, links)
        if not isinstance(ref, Digest):
            self._tag_changed(name, ref)
        if repository.created:
            self._feed.bump(Topic.REPOSITORIES)
        return PutManifestResult(digest, parsed.subject.digest if parsed.subject else None, parsed.media_type)

    def delete_manifest(self, name: str, reference: str) -> None:
        self._check_deletable()
        validate_name(name)
        ref = _existing_reference(name, reference)
        with self._db.write() as connection:
            repository_id = self._repository_id(connection, name)
            if repository_id is None:
                raise ManifestUnknown(detail={"name": name, "reference": reference})
            if isinstance(ref, Digest):
                self._immutability.check_tag_removable(
                    name, self._tags_of(connection, repository_id, str(ref))
                )
                doomed = select(Manifest.id).where(
                    Manifest.repository_id == repository_id, Manifest.digest == str(ref)
                )
                stamp_unreferenced(connection, list(connection.scalars(doomed)))
                result = connection.execute(
                    delete(Manifest).where(
                        Manifest.repository_id == repository_id, Manifest.digest == str(ref)
                    )
                )
                if result.rowcount:
                    release(connection, project_of_repository(connection, repository_id), [str(ref)])
            else:
                result = connection.execute(
                    delete(Tag).where(Tag.repository_id == repository_id, Tag.name == ref)
                )
                if result.rowcount:
                    self._immutability.check_tag_removable(name, [ref])  # raising rolls the delete back
            if result.rowcount == 0:
                raise ManifestUnknown(detail={"name": name, "reference": reference})
        if isinstance(ref, Digest):
            self._feed.bump(Topic.MANIFESTS, name)  # its tags went with it
        else:
            self._tag_changed(name, ref)

    def delete_batch(self, name: str, requests: Sequence[DeleteRequest]) -> list[DeleteResult]:
        """Delete tags and untagged manifests of one repository in one transaction, each only if it is
        as the caller saw it (registry.batch_deletes); the caches of every node are dropped once."""
        self._check_deletable()
        validate_name(name)
        immutable: dict[str, str] = {}
        for tag in {request.tag for request in requests if request.tag is not None}:
            rule = self._immutability.rule_for(name, tag)  # cached: before the write transaction
            if rule is not None:
                immutable[tag] = tag_immutable(name, tag, rule).message
        with self._db.write() as connection:
            results = delete_in_repository(connection, name, requests, immutable)
        if any(result.outcome is BatchOutcome.DELETED for result in results):
            self._feed.bump(Topic.MANIFESTS, name)
        return results

    # --- listings -----------------------------------------------------------------------------
    def list_tags(self, name: str, limit: int | None, last: str | None) -> Page:
        validate_name(name)
        key = ("tags", name, limit, last)
        generation = self._tag_lists.current_generation(key)
        with self._db.read() as connection:
            repository_id = self._repository_id(connection, name)
            if repository_id is None:
                raise NameUnknown(detail={"name": name})
            column = bytewise(Tag.name, connection)
            query = select(Tag.name).where(Tag.repository_id == repository_id).order_by(column)
            if last:
                query = query.where(column > last)
            page = _page(connection, query, limit)
        self._tag_lists.put(key, page, generation)
        return page

    def catalog(self, limit: int | None, last: str | None, projects: frozenset[str] | None = None) -> Page:
        """Repository names in lexical order; only those in `projects` when it is given (the caller's
        visible projects), all of them when it is None."""
        key = ("catalog", None if projects is None else ",".join(sorted(projects)), limit, last)
        generation = self._catalog.current_generation()
        with self._db.read() as connection:
            column = bytewise(Repository.name, connection)
            query = select(Repository.name).order_by(column)
            if projects is not None:
                query = query.join(ProjectRow, ProjectRow.id == Repository.project_id).where(
                    ProjectRow.name.in_(projects)
                )
            if last:
                query = query.where(column > last)
            page = _page(connection, query, limit)
        self._catalog.put(key, page, generation)
        return page

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> ReferrerList:
        validate_name(name)
        parse_digest(digest)
        with self._db.read() as connection:
            query = (
                select(
                    Manifest.digest,
                    Manifest.media_type,
                    Manifest.size,
                    Manifest.artifact_type,
                    Manifest.annotations,
                )
                .join(Repository, Repository.id == Manifest.repository_id)
                .where(Repository.name == name, Manifest.subject_digest == digest)
                .order_by(Manifest.id)
            )
            if artifact_type:
                query = query.where(Manifest.artifact_type == artifact_type)
            rows = connection.execute(query).all()
        descriptors = []
        for row in rows:
            descriptor = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
            if row.artifact_type:
                descriptor["artifactType"] = row.artifact_type
            if row.annotations:
                descriptor["annotations"] = row.annotations
            descriptors.append(descriptor)
        return ReferrerList(tuple(descriptors), artifact_type is not None)

    # --- blobs --------------------------------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int:
        """The size of a blob this repository may read; BlobUnknown otherwise."""
        values, generation = self._blob_size_lookup(name, digest)
        row = self._db.lookups.one(self._blob_size, values)
        return self._found_blob_size(name, digest, row, generation)

    async def blob_size_async(self, name: str, digest: str, in_thread: InThread) -> int:
        """blob_size on the event loop, never blocking it (see manifest_async)."""
        values, generation = self._blob_size_lookup(name, digest)
        row = await self._db.lookups.one_async(self._blob_size, values, in_thread)
        return self._found_blob_size(name, digest, row, generation)

    def _blob_size_lookup(self, name: str, digest: str) -> tuple[dict[str, str], int]:
        validate_name(name)
        parse_digest(digest)
        return {"repository": name, "digest": digest}, self._blob_sizes.current_generation((name, digest))

    def _found_blob_size(self, name: str, digest: str, row: tuple[Any, ...] | None, generation: int) -> int:
        if row is None:
            raise BlobUnknown(detail={"name": name, "digest": digest})
        size = int(row[0])
        self._blob_sizes.put((name, digest), size, generation)
        return size

    def delete_blob(self, name: str, digest: str) -> None:
        """Unlink the blob from the repository; its bytes go when garbage collection finds them unused.
        BlobReferenced while a manifest of the repository uses it (an immutable tag's image included)."""
        self._check_deletable()
        validate_name(name)
        parse_digest(digest)
        with self._db.write() as connection:
            repository_id = self._repository_id(connection, name)
            # PostgreSQL: a manifest PUT share-locks the rows of the blobs it references until it commits;
            # wait for those, so the check below (a new statement: a fresh snapshot under READ COMMITTED)
            # sees the manifests they committed. SQLite: writes are serial.
            connection.execute(select(Blob.digest).where(Blob.digest == digest).with_for_update())
            user = connection.scalar(
                select(Manifest.digest)
                .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
                .where(
                    Manifest.repository_id == repository_id,
                    ManifestReference.digest == digest,
                    ManifestReference.kind == "blob",
                )
                .order_by(Manifest.id)
                .limit(1)
            )
            if user is not None:
                raise BlobReferenced(
                    f"blob {digest} is used by manifest {user} in {name}: delete the manifests that use it "
                    "first (garbage collection then removes blobs no manifest uses)",
                    detail={"name": name, "digest": digest, "manifest": user},
                )
            result = connection.execute(
                delete(RepositoryBlob).where(
                    RepositoryBlob.repository_id == repository_id, RepositoryBlob.digest == digest
                )
            )
            if result.rowcount and repository_id is not None:
                release(connection, project_of_repository(connection, repository_id), [digest])
        if result.rowcount == 0:
            raise BlobUnknown(detail={"name": name, "digest": digest})
        self._feed.bump(Topic.BLOB_DELETES, name)

    def mount_blob(
        self, name: str, digest: str, source: str | None, projects: frozenset[str] | None = None
    ) -> int | None:
        """Link an existing blob into name; from `source` when given, else from any repository (in one
        of `projects` when given: those the caller may read). Returns the size, or None when there is
        nothing to mount (the client uploads instead)."""
        self._check_writable()
        validate_name(name)
        parse_digest(digest)
        if source is None and projects is not None and not projects:
            return None  # the caller may read no project
        with self._db.write() as connection:
            # PostgreSQL: share-lock the row against garbage collection (docs/gc.md): it either waits
            # for a collector holding it and then sees it tombstoned (nothing to mount), or holds it
            # until the link below is committed, which the collector then sees.
            if source is not None:
                mounted = self._mount_from(connection, name, digest, source)
                if mounted is None:
                    return None
                repository, size = mounted
            else:
                query = select(Blob.size).where(Blob.digest == digest, live()).with_for_update(**_KEY_SHARE)
                if projects is not None:
                    query = (
                        query.join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
                        .join(Repository, Repository.id == RepositoryBlob.repository_id)
                        .join(ProjectRow, ProjectRow.id == Repository.project_id)
                        .where(ProjectRow.name.in_(sorted(projects)))
                    )
                found = connection.scalar(query.limit(1))
                if found is None:
                    return None
                size = int(found)
                repository = ensure_repository(connection, name)
                link_blob(connection, self._quotas, repository, digest, size)  # QuotaExceeded: no mount
        if repository.created:
            self._feed.bump(Topic.REPOSITORIES)  # the catalog changed
        return size

    # --- internals ----------------------------------------------------------------------------
    def _mount_from(
        self, connection: Connection, name: str, digest: str, source: str
    ) -> tuple[RepositoryRow, int] | None:
        """Link the blob from `source` into `name` (created when missing): the repository written to comes
        with the blob, in the same statement (a round trip less); on PostgreSQL the link into an existing
        repository and the charge's first look too (`_MOUNT_AND_LINK`). None: nothing to mount."""
        values: dict[str, Any] = {"digest": digest, "source": source, "repository": name}
        postgresql = connection.dialect.name == "postgresql"
        if postgresql:
            values["created_at"] = utcnow()
        found = (_MOUNT_AND_LINK if postgresql else _MOUNTABLE_FROM).execute(connection, values).first()
        if found is None:
            return None
        size = int(found.size)
        if found.repository_id is None:
            repository = create_repository(connection, name)
        else:
            repository = RepositoryRow(found.repository_id, found.project_id, False)
            if postgresql:  # linked already: the charge, with what the statement found
                if repository.project_id is not None:
                    counted = found.counted is not None
                    self._quotas.charge(connection, repository.project_id, digest, size, counted=counted)
                return repository, size
        link_blob(connection, self._quotas, repository, digest, size)
        return repository, size

    def _tag_changed(self, name: str, tag: str) -> None:
        """After the commit: drop the tag's lookups and the repository's tag lists, everywhere."""
        self._feed.bump(Topic.TAGS, tag_key(name, tag), name)

    def _manifest_cache(self, reference: str) -> KeyedGenerationCache[tuple[str, str], ManifestRecord]:
        # A digest always has its algorithm before a colon; a tag can have no colon.
        return self._manifests_by_digest if ":" in reference else self._manifests_by_tag

    def _check_writable(self) -> None:
        # The configured mode, or the runtime switch (db.readonly: `dockyard move`, `read-only on`).
        if self.read_only or self._db.is_read_only():
            raise ReadOnly()

    def _check_deletable(self) -> None:
        self._check_writable()
        if not self.delete_enabled:
            raise DeleteDisabled()

    def _repository_id(self, connection: Connection, name: str) -> int | None:
        return connection.scalar(select(Repository.id).where(Repository.name == name))

    def _tag_target(self, connection: Connection, repository_id: int, tag: str) -> str | None:
        return connection.scalar(
            select(Manifest.digest)
            .join(Tag, Tag.manifest_id == Manifest.id)
            .where(Tag.repository_id == repository_id, Tag.name == tag)
        )

    def _tags_of(self, connection: Connection, repository_id: int, digest: str) -> list[str]:
        return list(
            connection.scalars(
                select(Tag.name)
                .join(Manifest, Manifest.id == Tag.manifest_id)
                .where(Manifest.repository_id == repository_id, Manifest.digest == digest)
            )
        )


def _key_weight(key: tuple[str, str], value: object) -> int:
    return len(key[0]) + len(key[1]) + ENTRY_OVERHEAD


def _manifest_weight(key: tuple[str, str], record: ManifestRecord) -> int:
    return _key_weight(key, record) + len(record.content) + len(record.digest) + len(record.media_type)


def _page_weight(key: tuple[str, str | None, int | None, str | None], page: Page) -> int:
    return ENTRY_OVERHEAD + sum(len(name) + 56 for name in page.items)  # a str object is ~56 bytes + chars


# The hot paths' point reads (db.lookups), each driven by the unique keys: repository by name, then
# the tag by (repository, name) or the manifest by (repository, digest), the link by (repository, digest).
_REPOSITORY_ID = select(Repository.id).where(Repository.name == bindparam("repository")).scalar_subquery()
_MANIFEST_COLUMNS = (Manifest.digest, Manifest.media_type, Manifest.content)
_MANIFEST_BY_TAG = select(*_MANIFEST_COLUMNS).where(
    Manifest.id
    == select(Tag.manifest_id)
    .where(Tag.repository_id == _REPOSITORY_ID, Tag.name == bindparam("tag"))
    .scalar_subquery()
)
_MANIFEST_BY_DIGEST = select(*_MANIFEST_COLUMNS).where(
    Manifest.repository_id == _REPOSITORY_ID, Manifest.digest == bindparam("digest")
)
_BLOB_SIZE = select(Blob.size).where(
    Blob.digest == bindparam("digest"),
    live(),
    exists().where(
        RepositoryBlob.repository_id == _REPOSITORY_ID, RepositoryBlob.digest == bindparam("digest")
    ),
)


# A mount from a named repository (what clients send): the blob, live, linked to the source; with the
# repository mounted into (its id and project; NULL when it does not exist yet). No row: no such blob.
_KEY_SHARE: dict[str, Any] = {"read": True, "key_share": True, "of": Blob}
_MOUNTABLE = (
    select(Blob.size)
    .join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
    .join(Repository, Repository.id == RepositoryBlob.repository_id)
    .where(Blob.digest == bindparam("digest"), live(), Repository.name == bindparam("source"))
    .with_for_update(**_KEY_SHARE)
    .limit(1)
    .subquery("mountable")
)
_TARGET = aliased(Repository, name="target")
_MOUNTABLE_FROM = DriverStatement(  # on the driver connection, in the mount's transaction (db.statements)
    select(_MOUNTABLE.c.size, _TARGET.id.label("repository_id"), _TARGET.project_id).select_from(
        _MOUNTABLE.outerjoin(_TARGET, _TARGET.name == bindparam("repository"))
    )
)


def _mount_and_link(dialect: str) -> Any:
    """PostgreSQL: `_MOUNTABLE_FROM`, and when the repository exists, the link (INSERT ... ON CONFLICT
    DO NOTHING, in a CTE that reads the blob share-locked first) and the project's count row of the
    digest share-locked (`COUNTED`, `counted`: NULL when the project counts it not), as
    repository_writes.link_blob does in a statement of its own: one round trip for a mount into an
    existing repository. The lock's condition counts the link's rows, so the INSERT runs to its end
    before the count row is locked (the order an unlink needs: registry.usage)."""
    mountable = select(_MOUNTABLE.c.size).cte("mount_source")
    target = (
        select(Repository.id, Repository.project_id)
        .where(Repository.name == bindparam("repository"))
        .cte("target")
    )
    link = (
        insert_for(dialect, RepositoryBlob)
        .from_select(
            ["repository_id", "digest", "created_at"],
            select(
                target.c.id,
                bindparam("digest", type_=String),
                bindparam("created_at", type_=UTCDateTime),
            ).select_from(mountable.join(target, true())),
        )
        .on_conflict_do_nothing()
        .returning(RepositoryBlob.digest)
        .cte("link")
    )
    linked = select(func.count()).select_from(link).scalar_subquery()
    counted = (
        select(ProjectBlobRow.digest)
        .where(
            ProjectBlobRow.project_id == target.c.project_id,
            ProjectBlobRow.digest == bindparam("digest", type_=String),
            linked >= 0,
        )
        .with_for_update(read=True, key_share=True)
        .scalar_subquery()
    )
    return select(
        mountable.c.size,
        target.c.id.label("repository_id"),
        target.c.project_id,
        counted.label("counted"),
    ).select_from(mountable.outerjoin(target, true()))


_MOUNT_AND_LINK = DriverStatement(_mount_and_link)


def _existing_reference(name: str, reference: str) -> str | Digest:
    """The reference of a manifest to read or delete. One that is not a valid tag names nothing that
    could exist: 404 MANIFEST_UNKNOWN, as the OCI conformance suite expects (a push to it is a 400)."""
    try:
        return parse_reference(reference)
    except TagInvalid:
        raise ManifestUnknown(
            f"no manifest {reference!r}: not a valid tag or digest",
            detail={"name": name, "reference": reference},
        ) from None


def _page(connection: Connection, query: object, limit: int | None) -> Page:
    if limit is not None:
        query = query.limit(limit + 1)  # type: ignore[attr-defined]
    names = tuple(connection.scalars(query))  # type: ignore[call-overload]
    if limit is not None and len(names) > limit:
        return Page(names[:limit], True)
    return Page(names, False)
