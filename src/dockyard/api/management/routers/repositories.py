"""Repositories, artifacts (manifests) and tags, read from the registry's DB; deletes go through Registry.

Repository names contain slashes (`team/app`). Put them in the path as they are
(`/repositories/team/app/artifacts`); `%2F` works too, since the path is decoded before routing.
The last path segments decide the route, so a repository may even be called `team/artifacts/x`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from dockyard.api.management.access import require, visible
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.routers.scans import ScanSummaryOut, scans_of, summary_out
from dockyard.api.management.security import Caller
from dockyard.api.manifest_effects import PushedManifest, actor_name, request_info
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.auth.interfaces import Principal
from dockyard.content.digest import Digest
from dockyard.content.reference import parse_reference
from dockyard.errors import DigestInvalid, ManifestUnknown, NameUnknown, TagInvalid
from dockyard.projects.rbac import Permission, project_of
from dockyard.registry.queries import (
    ARTIFACT_SORTS,
    REPOSITORY_SORTS,
    TAG_SORTS,
    ArtifactSummary,
    RepositorySummary,
    TagInfo,
    Window,
)

router = APIRouter(tags=["repositories"])
Services = Annotated[ManagementServices, Depends(services_of)]


class RepositoryOut(BaseModel):
    name: str
    project: str
    artifact_count: int
    tag_count: int
    size: int
    created_at: datetime
    pushed_at: datetime | None


class PlatformOut(BaseModel):
    digest: str
    os: str | None
    architecture: str | None
    variant: str | None


class ArtifactOut(BaseModel):
    repository: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    tags: list[str]
    pushed_at: datetime
    pulled_at: datetime | None = None  # to the minute, written a few seconds after the pull
    subject: str | None
    annotations: dict[str, str] | None
    platforms: list[PlatformOut] | None
    scan: ScanSummaryOut | None = Field(
        default=None, description="The stored vulnerability scan's summary; null: never scanned."
    )


class ArtifactDetailOut(ArtifactOut):
    manifest: dict[str, Any]


class TagOut(BaseModel):
    name: str
    digest: str
    media_type: str
    pushed_at: datetime


class TagIn(BaseModel):
    digest: str = Field(description="The artifact the tag is to name: a manifest of this repository.")
    move: bool = Field(
        default=False,
        description="Move the tag if it names another artifact now; without it, that is a 409.",
    )


class TagSetOut(TagOut):
    previous: str | None = Field(description="The artifact the tag named before; null: a new tag.")


def window(params: ListParams) -> Window:
    return Window(params.offset, params.limit, params.sort_key, params.descending)


def repository_out(summary: RepositorySummary) -> RepositoryOut:
    return RepositoryOut(project=project_of(summary.name), **_fields(summary))


def artifact_out(summary: ArtifactSummary) -> ArtifactOut:
    return ArtifactOut(**_artifact_fields(summary))


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def _artifact_fields(summary: ArtifactSummary) -> dict[str, Any]:
    fields = _fields(summary)
    fields["tags"] = list(summary.tags)
    fields["platforms"] = (
        [PlatformOut(**_fields(p)) for p in summary.platforms] if summary.platforms is not None else None
    )
    return fields


def _readable(services: ManagementServices, principal: Any, name: str) -> None:
    require(
        services, principal, project_of(name), Permission.PROJECT_READ, NameUnknown(detail={"name": name})
    )


@router.get("/repositories", response_model=list[RepositoryOut])
def list_repositories(
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(REPOSITORY_SORTS, "name"))],
    project: Annotated[str | None, Query(description="Only this project's repositories.")] = None,
) -> list[RepositoryOut]:
    """Repositories the caller may read. `q` matches part of the name."""
    items, total = services.queries.list_repositories(
        window(params),
        projects=visible(services, principal),
        name_contains=params.q,
        project=project,
    )
    set_page_headers(request, response, params, total)
    return [repository_out(item) for item in items]


@router.get("/repositories/{name:path}/artifacts/{reference}", response_model=ArtifactDetailOut)
def get_artifact(name: str, reference: str, principal: Caller, services: Services) -> ArtifactDetailOut:
    """One artifact, by digest or tag, with its manifest document."""
    _readable(services, principal, name)
    detail = services.queries.get_artifact(name, reference)
    scan = summary_out(scans_of(services).summaries(name, [detail.summary.digest]).get(detail.summary.digest))
    return ArtifactDetailOut(manifest=detail.manifest, scan=scan, **_artifact_fields(detail.summary))


@router.delete("/repositories/{name:path}/artifacts/{reference}", status_code=204)
def delete_artifact(
    name: str, reference: str, request: Request, principal: Caller, services: Services
) -> None:
    """Delete an artifact (by digest, or by one of its tags: then the whole artifact and all its tags)."""
    require(services, principal, project_of(name), Permission.DELETE, NameUnknown(detail={"name": name}))
    parse_reference(reference)
    digest = services.queries.get_artifact(name, reference).summary.digest
    services.registry.delete_manifest(name, digest)
    _after_delete(services, request, principal, name, digest)


@router.get("/repositories/{name:path}/artifacts", response_model=list[ArtifactOut])
def list_artifacts(
    name: str,
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(ARTIFACT_SORTS, "-pushed_at"))],
    media_type: Annotated[str | None, Query(description="Only artifacts of this media type.")] = None,
    tagged: Annotated[bool | None, Query(description="true: tagged only; false: untagged only.")] = None,
) -> list[ArtifactOut]:
    """Artifacts of a repository. `q` matches a digest prefix or part of a tag."""
    _readable(services, principal, name)
    items, total = services.queries.list_artifacts(
        name, window(params), text=params.q, media_type=media_type, tagged=tagged
    )
    set_page_headers(request, response, params, total)
    scans = scans_of(services).summaries(name, [item.digest for item in items])  # one query for the page
    return [ArtifactOut(scan=summary_out(scans.get(item.digest)), **_artifact_fields(item)) for item in items]


@router.get("/repositories/{name:path}/tags", response_model=list[TagOut])
def list_tags(
    name: str,
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(TAG_SORTS, "name"))],
    digest: Annotated[str | None, Query(description="Only tags pointing at this digest.")] = None,
) -> list[TagOut]:
    """Tags of a repository. `q` matches part of the tag."""
    _readable(services, principal, name)
    items, total = services.queries.list_tags(name, window(params), name_contains=params.q, digest=digest)
    set_page_headers(request, response, params, total)
    return [tag_out(item) for item in items]


@router.delete("/repositories/{name:path}/tags/{tag}", status_code=204)
def delete_tag(name: str, tag: str, request: Request, principal: Caller, services: Services) -> None:
    """Remove a tag; the artifact stays (reachable by digest and its other tags)."""
    require(services, principal, project_of(name), Permission.DELETE, NameUnknown(detail={"name": name}))
    if isinstance(parse_reference(tag), Digest):
        # A digest here would delete the artifact itself, which is the artifacts endpoint's job.
        raise TagInvalid("a tag name was expected, not a digest")
    services.registry.delete_manifest(name, tag)
    _after_delete(services, request, principal, name, tag)


def _after_delete(
    services: ManagementServices, request: Request, principal: Principal, name: str, reference: str
) -> None:
    """The events and replication a delete over /v2 would have caused."""
    effects = services.manifest_effects
    if effects is not None:
        effects.deleted(name, reference, request_info(request), actor_name(principal))


@router.put("/repositories/{name:path}/tags/{tag}", response_model=TagSetOut)
def set_tag(
    name: str,
    tag: str,
    body: TagIn,
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
) -> TagSetOut:
    """Add a tag to an artifact of the repository, or (`move: true`) move one to it. As a push of the
    artifact's manifest under the tag, with a push's permission and policies (an immutable tag is not
    moved, a read-only registry refuses), without sending its bytes. 201: a new tag; 200: moved, or
    already there."""
    for permission in (Permission.PULL, Permission.PUSH):  # as a manifest PUT over /v2
        require(services, principal, project_of(name), permission, NameUnknown(detail={"name": name}))
    if isinstance(parse_reference(tag), Digest):
        raise TagInvalid("a tag name was expected, not a digest")
    if not isinstance(parse_reference(body.digest), Digest):
        raise DigestInvalid("digest must be a digest (sha256:...), not a tag", detail={"digest": body.digest})
    detail = {"digest": body.digest, "move": body.move}
    with audited(
        services, request, principal, AuditAction.PUSH, ResourceType.ARTIFACT, f"{name}:{tag}", detail
    ) as extra:
        record = services.registry.get_manifest(name, body.digest)
        try:
            previous: str | None = services.registry.get_manifest(name, tag).digest
        except ManifestUnknown:
            previous = None
        extra["previous"] = previous
        if previous not in (None, record.digest) and not body.move:
            raise ApiError(409, f"tag {tag} names {previous}: send move: true to move it")
        result = services.registry.put_manifest(name, tag, record.content, record.media_type)
    effects = services.manifest_effects
    if effects is not None:  # the events and replication a push of the tag would have caused
        pushed = PushedManifest(
            name, tag, result.digest, result.media_type, len(record.content), result.subject
        )
        effects.pushed(pushed, request_info(request), actor_name(principal), scan=False)
    response.status_code = 201 if previous is None else 200
    tags, _ = services.queries.list_tags(
        name, Window(0, 100, "name", False), name_contains=tag, digest=record.digest
    )
    written = next((t for t in tags if t.name == tag), None)  # None: moved again since
    pushed_at = written.pushed_at if written else datetime.now(UTC)
    return TagSetOut(
        name=tag, digest=record.digest, media_type=record.media_type, pushed_at=pushed_at, previous=previous
    )


@router.get("/repositories/{name:path}", response_model=RepositoryOut)
def get_repository(name: str, principal: Caller, services: Services) -> RepositoryOut:
    _readable(services, principal, name)
    return repository_out(services.queries.get_repository(name))


def tag_out(tag: TagInfo) -> TagOut:
    return TagOut(name=tag.name, digest=tag.digest, media_type=tag.media_type, pushed_at=tag.pushed_at)
