"""Groups of users (system administrators only): list, create, show with its members, add or remove a
member, delete. A project membership can name a group, so its members get the role together.

Local groups are made here and their members chosen here. Directory (LDAP) and single sign-on (OIDC)
groups are made by logins and their members are the provider's: each login puts the user in exactly
the groups the provider names, so their members cannot be changed here (409); such a group can be
deleted (a later login that names it makes it again, without its project memberships).

Groups are addressed by id: a directory group's name is a DN, which may hold any printable text.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from dockyard.accounts.groups import GroupService
from dockyard.accounts.interfaces import Group, UserSource
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.ids import ResourceId
from dockyard.api.management.listing import ListParams, list_params, set_page_headers
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType

router = APIRouter(tags=["groups"])
Services = Annotated[ManagementServices, Depends(services_of)]
GROUP_SORTS = ("name", "id")


class GroupOut(BaseModel):
    id: int
    name: str
    source: str = Field(description="local (made here), ldap or oidc (made and kept by logins)")


class GroupDetailOut(GroupOut):
    members: list[str] = Field(description="Usernames, sorted.")


class GroupCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)


def _groups(services: ManagementServices) -> GroupService:
    if services.groups is None:
        raise ApiError(404, "this server has no groups (its accounts are not dockyard's)")
    return services.groups


def group_out(group: Group) -> GroupOut:
    return GroupOut(id=group.id, name=group.name, source=group.source.value)


def _detail(groups: GroupService, group: Group) -> GroupDetailOut:
    return GroupDetailOut(**group_out(group).model_dump(), members=groups.members(group.name))


@router.get("/groups", response_model=list[GroupOut])
def list_groups(
    request: Request,
    response: Response,
    principal: Admin,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(GROUP_SORTS, "name"))],
) -> list[GroupOut]:
    """`q` matches part of the name."""
    page = _groups(services).list(
        search=params.q,
        offset=params.offset,
        limit=params.limit,
        sort=params.sort_key,
        descending=params.descending,
    )
    set_page_headers(request, response, params, page.total)
    return [group_out(group) for group in page.items]


@router.post("/groups", response_model=GroupDetailOut, status_code=201)
def create_group(body: GroupCreate, request: Request, principal: Admin, services: Services) -> GroupDetailOut:
    """A local group, without members."""
    groups = _groups(services)
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.GROUP, body.name):
        group = groups.create(body.name, UserSource.LOCAL)
    return _detail(groups, group)


@router.get("/groups/{group_id}", response_model=GroupDetailOut)
def get_group(group_id: ResourceId, principal: Admin, services: Services) -> GroupDetailOut:
    groups = _groups(services)
    return _detail(groups, groups.get_by_id(group_id))


@router.delete("/groups/{group_id}", status_code=204)
def delete_group(group_id: ResourceId, request: Request, principal: Admin, services: Services) -> None:
    """The group, its members' links and its project memberships."""
    groups = _groups(services)
    group = groups.get_by_id(group_id)
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.GROUP, group.name):
        groups.delete(group.name)


@router.put("/groups/{group_id}/members/{username}", response_model=GroupDetailOut)
def add_group_member(
    group_id: ResourceId, username: str, request: Request, principal: Admin, services: Services
) -> GroupDetailOut:
    """Add a user to a local group (nothing changes if they are in it already)."""
    groups = _groups(services)
    group = _local(groups.get_by_id(group_id))
    detail = {"added": username}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.GROUP, group.name, detail):
        groups.add_user(group.name, username)
    return _detail(groups, group)


@router.delete("/groups/{group_id}/members/{username}", response_model=GroupDetailOut)
def remove_group_member(
    group_id: ResourceId, username: str, request: Request, principal: Admin, services: Services
) -> GroupDetailOut:
    groups = _groups(services)
    group = _local(groups.get_by_id(group_id))
    detail = {"removed": username}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.GROUP, group.name, detail):
        groups.remove_user(group.name, username)
    return _detail(groups, group)


def _local(group: Group) -> Group:
    if group.source is not UserSource.LOCAL:
        source = group.source.value
        raise ApiError(409, f"the members of an {source} group are its provider's: they change at login")
    return group
