"""Projects and their members."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, cast

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
from dockyard.auth.interfaces import Principal
from dockyard.endpoints.interfaces import EndpointNotFound
from dockyard.projects.interfaces import Member, Project
from dockyard.projects.pull_policies import PullPolicy
from dockyard.projects.rbac import Permission, Role
from dockyard.proxy.interfaces import DEFAULT_TAG_TTL, MAX_TAG_TTL, ProxyConfig

router = APIRouter(tags=["projects"])
Services = Annotated[ManagementServices, Depends(services_of)]
PROJECT_SORTS = ("name", "created_at")
MEMBER_SORTS = ("name", "role", "created_at")


class ProxyIn(BaseModel):
    """Make the project a pull-through cache of a registry endpoint (docs/proxy.md)."""

    endpoint: str = Field(min_length=1, max_length=64, description="The registry endpoint's name.")
    tag_ttl_seconds: int = Field(
        default=DEFAULT_TAG_TTL,
        ge=0,
        le=MAX_TAG_TTL,
        description="How long a cached tag is served without asking the upstream (0: ask every time).",
    )


class ProxyOut(BaseModel):
    endpoint: str
    tag_ttl_seconds: int


Severity = Literal["none", "low", "medium", "high", "critical"]


class PullPolicyOut(BaseModel):
    require_signature: bool = Field(
        description="Pulls (manifest GETs) of artifacts without a signature that verifies against the "
        "project's trusted keys are refused."
    )
    block_severity: Severity = Field(
        description="Pulls of artifacts with vulnerabilities at or above this severity are refused "
        "(allowlisted ones do not count); none: off."
    )
    block_unscanned: bool = Field(description="Pulls of artifacts without a scan result are refused.")


class ProjectOut(BaseModel):
    id: int
    name: str
    public: bool
    created_at: datetime
    proxy: ProxyOut | None = Field(default=None, description="Set when the project is a pull-through cache.")
    repository_count: int | None = None  # on single-project reads
    pull_policy: PullPolicyOut | None = Field(default=None, description="On single-project reads.")
    permissions: list[str] = Field(
        default_factory=list, description="What the caller may do in this project."
    )


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    public: bool = False
    proxy: ProxyIn | None = None


class ProjectUpdate(BaseModel):
    public: bool | None = None
    require_signature: bool | None = Field(
        default=None,
        description="Refuse pulls of artifacts without a signature that verifies against the project's "
        "trusted keys (docs/security.md, Pull policies).",
    )
    block_severity: Severity | None = Field(
        default=None,
        description="Refuse pulls of artifacts with vulnerabilities at or above this severity "
        "(allowlist honoured); none turns it off.",
    )
    block_unscanned: bool | None = Field(
        default=None, description="Refuse pulls of artifacts that have no scan result."
    )
    proxy: ProxyIn | None = Field(
        default=None, description="Proxy settings; null makes the project an ordinary one (its cache stays)."
    )


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
    project: Project,
    permissions: frozenset[Permission],
    repositories: int | None = None,
    proxy: ProxyConfig | None = None,
    pull_policy: PullPolicy | None = None,
) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        public=project.public,
        created_at=project.created_at,
        proxy=ProxyOut(endpoint=proxy.endpoint, tag_ttl_seconds=proxy.tag_ttl) if proxy else None,
        repository_count=repositories,
        pull_policy=_policy_out(pull_policy) if pull_policy else None,
        permissions=sorted(permission.value for permission in permissions),
    )


def _proxies(services: ManagementServices) -> dict[str, ProxyConfig]:
    return {config.project: config for config in services.proxies.list()} if services.proxies else {}


def _set_proxy(
    services: ManagementServices, principal: Principal, project: str, proxy: ProxyIn | None
) -> None:
    """Proxy settings are the system administrators': the endpoint's credentials are used for pulls."""
    if not services.policy.is_admin(principal):
        raise ApiError(403, "only system administrators may change a project's proxy settings")
    if services.proxies is None:
        raise ApiError(501, "proxy projects are not available on this server")
    try:
        if proxy is None:
            services.proxies.clear(project)
        else:
            services.proxies.set(project, proxy.endpoint, proxy.tag_ttl_seconds)
    except EndpointNotFound as error:
        raise ApiError(422, error.message) from None


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
    proxies = _proxies(services)
    permissions = services.policy.permissions_in(principal, [p.name for p in page.items])
    return [project_out(p, permissions[p.name], proxy=proxies.get(p.name)) for p in page.items]


@router.post("/projects", response_model=ProjectOut, status_code=201)
def create_project(
    body: ProjectCreate, request: Request, principal: SignedIn, services: Services
) -> ProjectOut:
    """System administrators create projects; the creator becomes its project admin."""
    detail = body.model_dump(exclude_none=True, exclude={"name"})
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.PROJECT, body.name, detail):
        if not services.policy.can_create_projects(principal):
            raise ApiError(403, "only system administrators may create projects")
        owner = principal.name if principal.kind.value == "user" else None
        project = services.projects.create(body.name, public=body.public, owner=owner)
        if body.proxy is not None:
            try:
                _set_proxy(services, principal, project.name, body.proxy)
            except BaseException:
                services.projects.delete(project.name)  # all or nothing
                raise
    proxy = services.proxies.get(project.name) if services.proxies else None
    return project_out(project, services.policy.permissions(principal, project.name), proxy=proxy)


@router.get("/projects/{project}", response_model=ProjectOut)
def get_project(project: str, principal: Caller, services: Services) -> ProjectOut:
    permissions = require(services, principal, project, Permission.PROJECT_READ)
    found = services.projects.get(project)
    repositories = services.queries.count_repositories(project)
    proxy = services.proxies.get(project) if services.proxies else None
    return project_out(
        found,
        permissions,
        repositories,
        proxy,
        _pull_policy(services, project),
    )


def _policy_out(policy: PullPolicy) -> PullPolicyOut:
    return PullPolicyOut(
        require_signature=policy.require_signature,
        block_severity=cast(Severity, policy.block_severity),
        block_unscanned=policy.block_unscanned,
    )


def _pull_policy(services: ManagementServices, project: str) -> PullPolicy | None:
    return services.pull_policies.read(project) if services.pull_policies else None


@router.patch("/projects/{project}", response_model=ProjectOut)
def update_project(
    project: str, body: ProjectUpdate, request: Request, principal: Caller, services: Services
) -> ProjectOut:
    """Make a project public (anyone may pull, anonymous too) or private; make it a proxy of a registry
    endpoint, change its TTL, or (`proxy: null`) an ordinary project again (system administrators)."""
    changes = body.model_dump(exclude_unset=True)
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, changes):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        if "proxy" in body.model_fields_set:
            _set_proxy(services, principal, project, body.proxy)
        wanted = (body.require_signature, body.block_severity, body.block_unscanned)
        if any(value is not None for value in wanted):
            if services.pull_policies is None:
                raise ApiError(501, "pull policies are not available on this server")
            before = services.pull_policies.read(project)
            services.pull_policies.set(
                project,
                require_signature=body.require_signature,
                block_severity=body.block_severity,
                block_unscanned=body.block_unscanned,
            )
            if body.require_signature and not before.require_signature and services.jobs is not None:
                from dockyard.signatures.tasks import queue_reverification

                # Artifacts pushed before have no verdict yet: verify them, not refuse them for good.
                queue_reverification(services.db, services.jobs.enqueue, project)
        updated = services.projects.update(project, public=body.public)
    proxy = services.proxies.get(project) if services.proxies else None
    return project_out(
        updated,
        services.policy.permissions(principal, project),
        proxy=proxy,
        pull_policy=_pull_policy(services, project),
    )


@router.delete("/projects/{project}", status_code=204)
def delete_project(project: str, request: Request, principal: Caller, services: Services) -> None:
    """Delete an empty project (its members, robot permissions and project robots go with it)."""
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.PROJECT, project):
        require(services, principal, project, Permission.PROJECT_DELETE)
        repositories = services.queries.count_repositories(project)
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
