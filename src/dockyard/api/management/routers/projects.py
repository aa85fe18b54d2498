"""Projects and their members."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from dockyard.api.management.access import require, visible
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.ids import ResourceId
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.security import Caller, SignedIn
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.projects.interfaces import Member, Project
from dockyard.projects.rbac import Permission, Role
from dockyard.registry.queries import Window

router = APIRouter(tags=["projects"])
Services = Annotated[ManagementServices, Depends(services_of)]
PROJECT_SORTS = ("name", "created_at")
MEMBER_SORTS = ("name", "role", "created_at")


class ProjectOut(BaseModel):
    id: int
    name: str
    public: bool
    created_at: datetime
    repository_count: int | None = None  # on single-project reads
    permissions: list[str] = Field(
        default_factory=list, description="What the caller may do in this project."
    )


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    public: bool = False


class ProjectUpdate(BaseModel):
    public: bool | None = None


class MemberOut(BaseModel):
    id: int
    kind: str  # "user" | "group"
    name: str
    role: Role
    created_at: datetime


class MemberCreate(BaseModel):
    """Exactly one of `user` (a username) and `group` (a group name, e.g. from LDAP)."""

    user: str | None = Field(default=None, min_length=1, max_length=255)
    group: str | None = Field(default=None, min_length=1, max_length=512)
    role: Role

    @model_validator(mode="after")
    def _one_of(self) -> MemberCreate:
        if (self.user is None) == (self.group is None):
            raise ValueError("give exactly one of user and group")
        return self


class MemberUpdate(BaseModel):
    role: Role


def project_out(
    project: Project, permissions: frozenset[Permission], repositories: int | None = None
) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        public=project.public,
        created_at=project.created_at,
        repository_count=repositories,
        permissions=sorted(permission.value for permission in permissions),
    )


def member_out(member: Member) -> MemberOut:
    return MemberOut(
        id=member.id,
        kind=member.kind.value,
        name=member.name,
        role=Role(member.role),
        created_at=member.created_at,
    )


# --- projects -----------------------------------------------------------------------------------
@router.get("/projects", response_model=list[ProjectOut])
def list_projects(
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(PROJECT_SORTS, "name"))],
    public: Annotated[
        bool | None, Query(description="Only public (true) or private (false) projects.")
    ] = None,
) -> list[ProjectOut]:
    """Projects the caller may see. `q` matches part of the name."""
    page = services.projects.list(
        visible=visible(services, principal),
        search=params.q,
        public=public,
        offset=params.offset,
        limit=params.limit,
        sort=params.sort_key,
        descending=params.descending,
    )
    set_page_headers(request, response, params, page.total)
    return [project_out(p, services.policy.permissions(principal, p.name)) for p in page.items]


@router.post("/projects", response_model=ProjectOut, status_code=201)
def create_project(
    body: ProjectCreate, request: Request, principal: SignedIn, services: Services
) -> ProjectOut:
    """System administrators create projects; the creator becomes its project admin."""
    detail = {"public": body.public}
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.PROJECT, body.name, detail):
        if not services.policy.can_create_projects(principal):
            raise ApiError(403, "only system administrators may create projects")
        owner = principal.name if principal.kind.value == "user" else None
        project = services.projects.create(body.name, public=body.public, owner=owner)
    return project_out(project, services.policy.permissions(principal, project.name))


@router.get("/projects/{project}", response_model=ProjectOut)
def get_project(project: str, principal: Caller, services: Services) -> ProjectOut:
    require(services, principal, project, Permission.PROJECT_READ)
    found = services.projects.get(project)
    _, repositories = services.queries.list_repositories(Window(limit=1), project=project)
    return project_out(found, services.policy.permissions(principal, project), repositories)


@router.patch("/projects/{project}", response_model=ProjectOut)
def update_project(
    project: str, body: ProjectUpdate, request: Request, principal: Caller, services: Services
) -> ProjectOut:
    """Make a project public (anyone may pull, anonymous too) or private."""
    changes = body.model_dump(exclude_unset=True)
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, changes):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        updated = services.projects.update(project, public=body.public)
    return project_out(updated, services.policy.permissions(principal, project))


@router.delete("/projects/{project}", status_code=204)
def delete_project(project: str, request: Request, principal: Caller, services: Services) -> None:
    """Delete an empty project (its members, robot permissions and project robots go with it)."""
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.PROJECT, project):
        require(services, principal, project, Permission.PROJECT_DELETE)
        _, repositories = services.queries.list_repositories(Window(limit=1), project=project)
        if repositories:
            raise ApiError(
                412, f"project {project!r} still holds {repositories} repositories; delete them first"
            )
        services.projects.delete(project)


# --- members ------------------------------------------------------------------------------------
@router.get("/projects/{project}/members", response_model=list[MemberOut])
def list_members(
    project: str,
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(MEMBER_SORTS, "name"))],
    role: Annotated[Role | None, Query(description="Only members with this role.")] = None,
) -> list[MemberOut]:
    """`q` matches part of the member's name."""
    require(services, principal, project, Permission.MEMBER_READ)
    page = services.members.list(
        project,
        search=params.q,
        role=role.value if role else None,
        offset=params.offset,
        limit=params.limit,
        sort=params.sort_key,
        descending=params.descending,
    )
    set_page_headers(request, response, params, page.total)
    return [member_out(member) for member in page.items]


@router.post("/projects/{project}/members", response_model=MemberOut, status_code=201)
def add_member(
    project: str, body: MemberCreate, request: Request, principal: Caller, services: Services
) -> MemberOut:
    name = body.user or body.group or ""
    detail = {"kind": "user" if body.user else "group", "role": body.role.value}
    resource = f"{project}/{name}"
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.MEMBER, resource, detail):
        require(services, principal, project, Permission.MEMBER_MANAGE)
        if body.user is not None:
            member = services.members.add_user(project, body.user, body.role)
        else:
            member = services.members.add_group(project, name, body.role)
    return member_out(member)


@router.get("/projects/{project}/members/{member_id}", response_model=MemberOut)
def get_member(project: str, member_id: ResourceId, principal: Caller, services: Services) -> MemberOut:
    require(services, principal, project, Permission.MEMBER_READ)
    return member_out(services.members.get(project, member_id))


@router.patch("/projects/{project}/members/{member_id}", response_model=MemberOut)
def update_member(
    project: str,
    member_id: ResourceId,
    body: MemberUpdate,
    request: Request,
    principal: Caller,
    services: Services,
) -> MemberOut:
    resource = f"{project}/{member_id}"
    detail = {"role": body.role.value}
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.MEMBER, resource, detail
    ) as extra:
        require(services, principal, project, Permission.MEMBER_MANAGE)
        member = services.members.set_role(project, member_id, body.role)
        extra["name"] = member.name
    return member_out(member)


@router.delete("/projects/{project}/members/{member_id}", status_code=204)
def remove_member(
    project: str, member_id: ResourceId, request: Request, principal: Caller, services: Services
) -> None:
    resource = f"{project}/{member_id}"
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.MEMBER, resource) as extra:
        require(services, principal, project, Permission.MEMBER_MANAGE)
        extra["name"] = services.members.get(project, member_id).name
        services.members.remove(project, member_id)
