"""Robot accounts: system robots (`robot$ci`, permissions on any projects; administrators manage them)
and project robots (`robot$team+ci`, permissions on their own project; its project admins manage them).

In paths a robot is named by its short name (`ci`) or its full name (`robot$team+ci`). Secrets are
returned once, when the robot is created or its secret refreshed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from dockyard.accounts.interfaces import InvalidName, Robot
from dockyard.accounts.names import is_robot_name, robot_full_name, split_robot_name
from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.security import Admin, Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.auth.interfaces import Principal
from dockyard.db.base import utcnow
from dockyard.projects.rbac import Permission

router = APIRouter(tags=["robots"])
Services = Annotated[ManagementServices, Depends(services_of)]
ROBOT_SORTS = ("name", "created_at", "expires_at")
Action = Literal["pull", "push", "delete"]


class ProjectPermission(BaseModel):
    project: str = Field(min_length=1, max_length=255)
    actions: list[Action] = Field(min_length=1)


class RobotOut(BaseModel):
    id: int
    name: str  # the full name to log in with
    level: str  # "system" | "project"
    project: str | None
    description: str | None
    expires_at: datetime | None
    expired: bool
    disabled: bool
    created_at: datetime
    permissions: list[ProjectPermission]


class NewRobotOut(RobotOut):
    secret: str = Field(description="Shown this once.")


class SecretOut(BaseModel):
    name: str
    secret: str = Field(description="Shown this once; the old secret no longer works.")


class SystemRobotCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, description="Short name: robot$<name>.")
    description: str | None = Field(default=None, max_length=1024)
    expires_at: datetime | None = None
    permissions: list[ProjectPermission] = Field(min_length=1)


class ProjectRobotCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, description="Short name: robot$<project>+<name>.")
    description: str | None = Field(default=None, max_length=1024)
    expires_at: datetime | None = None
    actions: list[Action] = Field(min_length=1)


class RobotUpdate(BaseModel):
    """Only the fields sent change; `expires_at: null` removes the expiry."""

    description: str | None = Field(default=None, max_length=1024)
    expires_at: datetime | None = None
    disabled: bool | None = None
    permissions: list[ProjectPermission] | None = Field(default=None, description="System robots.")
    actions: list[Action] | None = Field(default=None, min_length=1, description="Project robots.")


# --- system robots ------------------------------------------------------------------------------
@router.get("/robots", response_model=list[RobotOut])
def list_system_robots(
    request: Request,
    response: Response,
    principal: Admin,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(ROBOT_SORTS, "name"))],
) -> list[RobotOut]:
    """System robots. `q` matches part of the name."""
    return _list(request, response, services, params, None)


@router.post("/robots", response_model=NewRobotOut, status_code=201)
def create_system_robot(
    body: SystemRobotCreate, request: Request, principal: Admin, services: Services
) -> NewRobotOut:
    wanted: dict[str, set[str]] = {p.project: set(p.actions) for p in body.permissions}
    return _create(services, request, principal, body.name, None, wanted, body.description, body.expires_at)


@router.get("/robots/{name}", response_model=RobotOut)
def get_system_robot(name: str, principal: Admin, services: Services) -> RobotOut:
    return _out(services, services.robots.get(_full_name(name, None)))


@router.patch("/robots/{name}", response_model=RobotOut)
def update_system_robot(
    name: str, body: RobotUpdate, request: Request, principal: Admin, services: Services
) -> RobotOut:
    return _update(services, request, principal, _full_name(name, None), body)


@router.post("/robots/{name}/secret", response_model=SecretOut)
def refresh_system_robot_secret(
    name: str, request: Request, principal: Admin, services: Services
) -> SecretOut:
    return _refresh(services, request, principal, _full_name(name, None))


@router.delete("/robots/{name}", status_code=204)
def delete_system_robot(name: str, request: Request, principal: Admin, services: Services) -> None:
    _delete(services, request, principal, _full_name(name, None))


# --- project robots -----------------------------------------------------------------------------
@router.get("/projects/{project}/robots", response_model=list[RobotOut])
def list_project_robots(
    project: str,
    request: Request,
    response: Response,
    principal: Caller,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(ROBOT_SORTS, "name"))],
) -> list[RobotOut]:
    """The project's own robots. `q` matches part of the name."""
    require(services, principal, project, Permission.ROBOT_READ)
    services.projects.get(project)
    return _list(request, response, services, params, project)


@router.post("/projects/{project}/robots", response_model=NewRobotOut, status_code=201)
def create_project_robot(
    project: str, body: ProjectRobotCreate, request: Request, principal: Caller, services: Services
) -> NewRobotOut:
    wanted: dict[str, set[str]] = {project: set(body.actions)}
    check = _manage(services, principal, project)
    return _create(
        services, request, principal, body.name, project, wanted, body.description, body.expires_at, check
    )


@router.get("/projects/{project}/robots/{name}", response_model=RobotOut)
def get_project_robot(project: str, name: str, principal: Caller, services: Services) -> RobotOut:
    require(services, principal, project, Permission.ROBOT_READ)
    return _out(services, services.robots.get(_full_name(name, project)))


@router.patch("/projects/{project}/robots/{name}", response_model=RobotOut)
def update_project_robot(
    project: str, name: str, body: RobotUpdate, request: Request, principal: Caller, services: Services
) -> RobotOut:
    full = _full_name(name, project)
    if body.actions is not None:
        # Not validated again: the path names the project (checked by _manage), `actions` was validated.
        permission = ProjectPermission.model_construct(project=project, actions=body.actions)
        body = body.model_copy(update={"permissions": [permission]})
    return _update(services, request, principal, full, body, _manage(services, principal, project))


@router.post("/projects/{project}/robots/{name}/secret", response_model=SecretOut)
def refresh_project_robot_secret(
    project: str, name: str, request: Request, principal: Caller, services: Services
) -> SecretOut:
    return _refresh(
        services, request, principal, _full_name(name, project), _manage(services, principal, project)
    )


@router.delete("/projects/{project}/robots/{name}", status_code=204)
def delete_project_robot(
    project: str, name: str, request: Request, principal: Caller, services: Services
) -> None:
    _delete(services, request, principal, _full_name(name, project), _manage(services, principal, project))


# --- shared -------------------------------------------------------------------------------------
# A permission check run inside the change's audit block, so a refusal is recorded as denied.
Check = Callable[[], object] | None


def _manage(services: ManagementServices, principal: Principal, project: str) -> Check:
    return lambda: require(services, principal, project, Permission.ROBOT_MANAGE)


def _run(check: Check) -> None:
    if check is not None:
        check()


def _full_name(name: str, project: str | None) -> str:
    """The full robot name from a short or full one, which must belong to `project` (None: system)."""
    if is_robot_name(name):
        _, owner = split_robot_name(name)
        if owner != project:
            raise InvalidName(
                f"{name!r} is not a robot of {'project ' + repr(project) if project else 'the system'}"
            )
        return name
    return robot_full_name(name, project)


def _out(services: ManagementServices, robot: Robot) -> RobotOut:
    permissions = services.robot_access.permissions(robot.name)
    return RobotOut(
        id=robot.id,
        name=robot.name,
        level=robot.level.value,
        project=robot.project,
        description=robot.description,
        expires_at=robot.expires_at,
        expired=robot.expired(utcnow()),
        disabled=robot.disabled,
        created_at=robot.created_at,
        permissions=[
            ProjectPermission(project=project, actions=sorted(actions))  # type: ignore[arg-type]
            for project, actions in sorted(permissions.items())
        ],
    )


def _list(
    request: Request,
    response: Response,
    services: ManagementServices,
    params: ListParams,
    project: str | None,
) -> list[RobotOut]:
    page = services.robots.list(
        project=project,
        search=params.q,
        offset=params.offset,
        limit=params.limit,
        sort=params.sort_key,
        descending=params.descending,
    )
    set_page_headers(request, response, params, page.total)
    return [_out(services, robot) for robot in page.items]


def _create(
    services: ManagementServices,
    request: Request,
    principal: Principal,
    name: str,
    project: str | None,
    permissions: dict[str, set[str]],
    description: str | None,
    expires_at: datetime | None,
    check: Check = None,
) -> NewRobotOut:
    full = _full_name(name, project)
    detail = {"permissions": {p: sorted(a) for p, a in permissions.items()}}
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.ROBOT, full, detail):
        _run(check)
        created = services.robot_access.create(
            name, project=project, permissions=permissions, description=description, expires_at=expires_at
        )
    return NewRobotOut(secret=created.secret, **_out(services, created.robot).model_dump())


def _update(
    services: ManagementServices,
    request: Request,
    principal: Principal,
    full: str,
    body: RobotUpdate,
    check: Check = None,
) -> RobotOut:
    changes = body.model_dump(exclude_unset=True, exclude={"permissions", "actions"}, mode="json")
    if body.permissions is not None:
        changes["permissions"] = {p.project: sorted(p.actions) for p in body.permissions}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.ROBOT, full, changes):
        _run(check)
        fields = body.model_dump(exclude_unset=True, include={"description", "expires_at", "disabled"})
        robot = services.robots.update(full, **fields) if fields else services.robots.get(full)
        if body.permissions is not None:
            services.robot_access.set_permissions(full, {p.project: set(p.actions) for p in body.permissions})
    return _out(services, robot)


def _refresh(
    services: ManagementServices, request: Request, principal: Principal, full: str, check: Check = None
) -> SecretOut:
    detail = {"field": "secret"}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.ROBOT, full, detail):
        _run(check)
        secret = services.robots.refresh_secret(full)
    return SecretOut(name=full, secret=secret)


def _delete(
    services: ManagementServices, request: Request, principal: Principal, full: str, check: Check = None
) -> None:
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.ROBOT, full):
        _run(check)
        services.robots.delete(full)
