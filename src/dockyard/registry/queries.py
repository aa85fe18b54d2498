"""Read-only views of the registry for the management API: repositories with counts and sizes,
artifacts (manifests) with their tags and platforms, tags, and search.

Every listing is one page of a query (offset, limit, sort key, direction) plus the total count, so a
registry with many repositories is never read whole. `projects` limits a listing to repositories in
those projects (the first path component of the name); None means no limit (a system administrator).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, or_, select

from dockyard.content.digest import Digest
from dockyard.content.mediatypes import INDEXES
from dockyard.content.reference import parse_reference, validate_name
from dockyard.db.paging import check_window
from dockyard.db.session import Database
from dockyard.errors import ManifestUnknown, NameUnknown, PaginationInvalid
from dockyard.registry.models import Manifest, ManifestReference, Repository, RepositoryBlob, Tag
from dockyard.storage.models import Blob


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    artifact_count: int
    tag_count: int
    size: int  # bytes of the blobs the repository links plus its manifests
    created_at: datetime
    pushed_at: datetime | None  # the latest manifest push or tag move


@dataclass(frozen=True, slots=True)
class Platform:
    digest: str
    os: str | None
    architecture: str | None
    variant: str | None


@dataclass(frozen=True, slots=True)
class ArtifactSummary:
    repository: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int  # the manifest, its blobs and (for an index) its child manifests with theirs
    tags: tuple[str, ...]
    pushed_at: datetime
    pulled_at: datetime | None  # the last GET of the manifest, to the minute, written every few seconds
    subject: str | None  # the digest this artifact refers to (signatures, SBOMs)
    annotations: dict[str, str] | None
    # An index's manifests; an image's own platform (from its config); None when unknown.
    platforms: tuple[Platform, ...] | None


@dataclass(frozen=True, slots=True)
class ArtifactDetail:
    summary: ArtifactSummary
    manifest: dict[str, Any]  # the stored manifest document


@dataclass(frozen=True, slots=True)
class TagInfo:
    name: str
    digest: str
    media_type: str
    pushed_at: datetime  # when the tag last moved


@dataclass(frozen=True, slots=True)
class Window:
    """Which part of a listing, in which order."""

    offset: int = 0
    limit: int = 100
    sort: str = "name"
    descending: bool = False

    def __post_init__(self) -> None:
        check_window(self.offset, self.limit)


REPOSITORY_SORTS = ("name", "created_at", "artifact_count", "size")
ARTIFACT_SORTS = ("pushed_at", "digest", "size")
TAG_SORTS = ("name", "pushed_at")


def project_of(repository: str) -> str:
    """The project a repository belongs to: the first component of its name."""
    return repository.split("/", 1)[0]


class RegistryQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- repositories -------------------------------------------------------------------------
    def list_repositories(
        self,
        window: Window,
        *,
        projects: Collection[str] | None = None,
        name_contains: str | None = None,
        project: str | None = None,
    ) -> tuple[list[RepositorySummary], int]:
        query = _repository_summaries()
        query = _in_projects(query, projects)
        if project is not None:
            query = _in_projects(query, [project])
        if name_contains:
            query = query.where(_contains(Repository.name, name_contains))
        columns = query.selected_columns
        sortable = {
            "name": Repository.name,
            "created_at": Repository.created_at,
            "artifact_count": columns.artifact_count,
            "size": columns.manifest_bytes + columns.blob_bytes,
        }
        with self._db.read() as connection:
            rows, total = _page(
                connection, query, window, sortable[_key(window, REPOSITORY_SORTS)], Repository.id
            )
        return [_repository(row) for row in rows], total

    def count_repositories(self, project: str) -> int:
        """How many repositories `project` holds: a COUNT, not a page of summaries."""
        values = {"project": project, "below": _like_prefix(project + "/")}
        with self._db.read() as connection:
            return int(connection.execute(_REPOSITORY_COUNT, values).scalar_one())

    def get_repository(self, name: str) -> RepositorySummary:
        validate_name(name)
        with self._db.read() as connection:
            row = connection.execute(_repository_summaries().where(Repository.name == name)).first()
        if row is None:
            raise NameUnknown(detail={"name": name})
        return _repository(row)

    # --- artifacts ----------------------------------------------------------------------------
    def list_artifacts(
        self,
        repository: str,
        window: Window,
        *,
        text: str | None = None,
        media_type: str | None = None,
        tagged: bool | None = None,
    ) -> tuple[list[ArtifactSummary], int]:
        """Manifests of a repository. `text` matches a digest prefix or part of a tag name."""
        validate_name(repository)
        with self._db.read() as connection:
            repository_id = _repository_id(connection, repository)
            own_blobs = _blob_bytes_of(Manifest.id)
            query = select(Manifest.id, (Manifest.size + own_blobs).label("total")).where(
                Manifest.repository_id == repository_id
            )
            if text:
                has_tag = select(Tag.name).where(Tag.manifest_id == Manifest.id, _contains(Tag.name, text))
                query = query.where(or_(Manifest.digest.startswith(text, autoescape=True), has_tag.exists()))
            if media_type:
                query = query.where(Manifest.media_type == media_type)
            if tagged is not None:
                any_tag = select(Tag.name).where(Tag.manifest_id == Manifest.id).exists()
                query = query.where(any_tag if tagged else ~any_tag)
            sortable = {
                "pushed_at": Manifest.created_at,
                "digest": Manifest.digest,
                "size": query.selected_columns.total,
            }
            rows, total = _page(
                connection, query, window, sortable[_key(window, ARTIFACT_SORTS)], Manifest.id
            )
            artifacts = _artifacts(connection, repository, [row.id for row in rows])
        return artifacts, total

    def get_artifact(self, repository: str, reference: str) -> ArtifactDetail:
        """One artifact by digest or by tag."""
        validate_name(repository)
        ref = parse_reference(reference)
        with self._db.read() as connection:
            repository_id = _repository_id(connection, repository)
            query = select(Manifest.id, Manifest.content).where(Manifest.repository_id == repository_id)
            if isinstance(ref, Digest):
                query = query.where(Manifest.digest == str(ref))
            else:
                query = query.join(Tag, Tag.manifest_id == Manifest.id).where(Tag.name == ref)
            row = connection.execute(query).first()
            if row is None:
                raise ManifestUnknown(detail={"name": repository, "reference": reference})
            (summary,) = _artifacts(connection, repository, [row.id])
        return ArtifactDetail(summary, stored_document(row.content))

    # --- tags ---------------------------------------------------------------------------------
    def list_tags(
        self, repository: str, window: Window, *, name_contains: str | None = None, digest: str | None = None
    ) -> tuple[list[TagInfo], int]:
        validate_name(repository)
        with self._db.read() as connection:
            repository_id = _repository_id(connection, repository)
            query = (
                select(Tag.name, Tag.updated_at, Manifest.digest, Manifest.media_type)
                .join(Manifest, Manifest.id == Tag.manifest_id)
                .where(Tag.repository_id == repository_id)
            )
            if name_contains:
                query = query.where(_contains(Tag.name, name_contains))
            if digest:
                query = query.where(Manifest.digest == digest)
            sortable = {"name": Tag.name, "pushed_at": Tag.updated_at}
            rows, total = _page(connection, query, window, sortable[_key(window, TAG_SORTS)], Tag.name)
        return [TagInfo(row.name, row.digest, row.media_type, row.updated_at) for row in rows], total


# --- query pieces -----------------------------------------------------------------------------
_repositories = Repository.__table__
# Built once (building a statement costs more CPU than running it): the project's own name (a
# repository may be named as its project) or a name below it, as `_in_projects` has them.
_REPOSITORY_COUNT = (
    select(func.count())
    .select_from(_repositories)
    .where(
        or_(
            _repositories.c.name == bindparam("project"),
            _repositories.c.name.like(bindparam("below"), escape="/"),
        )
    )
)


def _like_prefix(text: str) -> str:
    """A LIKE pattern (escape character `/`) for what starts with `text`, `%` and `_` as themselves."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def _repository_summaries() -> Select:
    artifact_count = (
        select(func.count(Manifest.id)).where(Manifest.repository_id == Repository.id).scalar_subquery()
    )
    tag_count = (
        select(func.count()).select_from(Tag).where(Tag.repository_id == Repository.id).scalar_subquery()
    )
    manifest_bytes = (
        select(func.coalesce(func.sum(Manifest.size), 0))
        .where(Manifest.repository_id == Repository.id)
        .scalar_subquery()
    )
    # Linked blobs, not blobs referenced by manifests: what the repository holds, uploads included.
    blob_bytes = (
        select(func.coalesce(func.sum(Blob.size), 0))
        .join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
        .where(RepositoryBlob.repository_id == Repository.id)
        .scalar_subquery()
    )
    last_manifest = select(func.max(Manifest.created_at)).where(Manifest.repository_id == Repository.id)
    last_tag = select(func.max(Tag.updated_at)).where(Tag.repository_id == Repository.id)
    return select(
        Repository.id,
        Repository.name,
        Repository.created_at,
        artifact_count.label("artifact_count"),
        tag_count.label("tag_count"),
        manifest_bytes.label("manifest_bytes"),
        blob_bytes.label("blob_bytes"),
        last_manifest.scalar_subquery().label("last_manifest"),
        last_tag.scalar_subquery().label("last_tag"),
    )


def _repository(row: Any) -> RepositorySummary:
    pushes = [moment for moment in (row.last_manifest, row.last_tag) if moment is not None]
    return RepositorySummary(
        name=row.name,
        artifact_count=int(row.artifact_count),
        tag_count=int(row.tag_count),
        size=int(row.manifest_bytes) + int(row.blob_bytes),
        created_at=row.created_at,
        pushed_at=max(pushes) if pushes else None,
    )


def _blob_bytes_of(manifest_id: Any) -> Any:
    return (
        select(func.coalesce(func.sum(Blob.size), 0))
        .join(ManifestReference, ManifestReference.digest == Blob.digest)
        .where(ManifestReference.manifest_id == manifest_id, ManifestReference.kind == "blob")
        .scalar_subquery()
    )


def _artifacts(connection: Connection, repository: str, manifest_ids: list[int]) -> list[ArtifactSummary]:
    """Summaries of these manifests, in the order given: three queries however long the page."""
    if not manifest_ids:
        return []
    rows = {
        row.id: row
        for row in connection.execute(
            select(
                Manifest.id,
                Manifest.repository_id,
                Manifest.digest,
                Manifest.media_type,
                Manifest.artifact_type,
                Manifest.subject_digest,
                Manifest.annotations,
                Manifest.size,
                Manifest.created_at,
                Manifest.last_pulled_at,
                Manifest.platform,
                _blob_bytes_of(Manifest.id).label("blob_bytes"),
            ).where(Manifest.id.in_(manifest_ids))
        )
    }
    tags: dict[int, list[str]] = {manifest_id: [] for manifest_id in manifest_ids}
    for manifest_id, name in connection.execute(
        select(Tag.manifest_id, Tag.name).where(Tag.manifest_id.in_(manifest_ids)).order_by(Tag.name)
    ):
        tags[manifest_id].append(name)
    indexes = [row for row in rows.values() if row.media_type in INDEXES]
    platforms = {row.id: _platforms(connection, row.id) for row in indexes}
    platforms.update({row.id: (_own_platform(row),) for row in rows.values() if row.platform})
    children = _child_bytes(connection, indexes)
    return [
        ArtifactSummary(
            repository=repository,
            digest=row.digest,
            media_type=row.media_type,
            artifact_type=row.artifact_type,
            size=int(row.size) + int(row.blob_bytes) + children.get(row.id, 0),
            tags=tuple(tags[row.id]),
            pushed_at=row.created_at,
            pulled_at=row.last_pulled_at,
            subject=row.subject_digest,
            annotations=_string_map(row.annotations),
            platforms=platforms.get(row.id),
        )
        for row in (rows[manifest_id] for manifest_id in manifest_ids)
    ]


def _platforms(connection: Connection, manifest_id: int) -> tuple[Platform, ...]:
    """The platform of each manifest an index lists, read from the stored index. Validated at push
    today, but rows stored before may hold anything: what is not a string reads as unknown (None)."""
    content = connection.scalar(select(Manifest.content).where(Manifest.id == manifest_id))
    entries = stored_document(content).get("manifests")
    found = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        platform = entry.get("platform")
        digest = _text(entry.get("digest")) or ""
        found.append(_platform(digest, platform if isinstance(platform, dict) else {}))
    return tuple(found)


def _own_platform(row: Any) -> Platform:
    """An image manifest's platform, read from its config at push (registry.manifest_writes)."""
    return _platform(row.digest, row.platform if isinstance(row.platform, dict) else {})


def _platform(digest: str, platform: dict[str, Any]) -> Platform:
    return Platform(
        digest=digest,
        os=_text(platform.get("os")),
        architecture=_text(platform.get("architecture")),
        variant=_text(platform.get("variant")),
    )


def stored_document(content: bytes | None) -> dict[str, Any]:
    """A stored manifest as a JSON object, never an error: rows stored before today's push checks may
    hold NaN or Infinity (read as null), an unpaired surrogate (replaced) or worse (read as {})."""
    try:
        document = json.loads(bytes(content or b"{}"), parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        replaced = json.dumps(document, ensure_ascii=False).encode("utf-8", "replace")
        return dict(json.loads(replaced))
    except RecursionError:
        return {}
    return document


def _text(value: Any) -> str | None:
    """A string from a stored document or JSON column, as UTF-8 can carry it; None if it is not one."""
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else None


def _string_map(value: Any) -> dict[str, str] | None:
    """Stored annotations, keeping only string-to-string pairs."""
    if not isinstance(value, dict):
        return None
    pairs = {_text(key): _text(item) for key, item in value.items()}
    return {key: item for key, item in pairs.items() if key is not None and item is not None} or None


def _child_bytes(connection: Connection, indexes: Iterable[Any]) -> dict[int, int]:
    """For each index: the bytes of the child manifests it lists and of their blobs (one level)."""
    totals: dict[int, int] = {}
    for index in indexes:
        child_digests = select(ManifestReference.digest).where(
            ManifestReference.manifest_id == index.id, ManifestReference.kind == "manifest"
        )
        total = connection.scalar(
            select(func.coalesce(func.sum(Manifest.size + _blob_bytes_of(Manifest.id)), 0)).where(
                Manifest.repository_id == index.repository_id, Manifest.digest.in_(child_digests)
            )
        )
        totals[index.id] = int(total or 0)
    return totals


def _repository_id(connection: Connection, name: str) -> int:
    repository_id = connection.scalar(select(Repository.id).where(Repository.name == name))
    if repository_id is None:
        raise NameUnknown(detail={"name": name})
    return int(repository_id)


def _in_projects(query: Select, projects: Collection[str] | None) -> Select:
    if projects is None:
        return query
    if not projects:
        return query.where(Repository.id.is_(None))  # nothing visible: an always-false condition
    conditions = []
    for project in projects:
        conditions.append(Repository.name == project)
        conditions.append(Repository.name.startswith(project + "/", autoescape=True))
    return query.where(or_(*conditions))


def _contains(column: Any, text: str) -> Any:
    """Case-insensitive substring; % and _ match themselves."""
    return func.lower(column).contains(text.lower(), autoescape=True)


def _key(window: Window, allowed: tuple[str, ...]) -> str:
    if window.sort not in allowed:
        raise PaginationInvalid(f"cannot sort by {window.sort!r}; allowed: {', '.join(allowed)}")
    return window.sort


def _page(
    connection: Connection, query: Select, window: Window, column: Any, tiebreak: Any
) -> tuple[list[Any], int]:
    total = connection.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    order = column.desc() if window.descending else column.asc()
    rows = connection.execute(query.order_by(order, tiebreak).offset(window.offset).limit(window.limit)).all()
    return list(rows), int(total)
