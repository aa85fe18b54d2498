"""`dockyard member ...`: who has which role in a project (users, or directory groups with --group)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

member_app = typer.Typer(no_args_is_help=True, help="Manage project members and their roles.")


class Role(StrEnum):
    """Harbor's project roles (as the API names them)."""

    PROJECT_ADMIN = "project_admin"
    MAINTAINER = "maintainer"
    DEVELOPER = "developer"
    GUEST = "guest"
    LIMITED_GUEST = "limited_guest"


ProjectName = Annotated[str, typer.Argument(help="The project.", show_default=False)]
MemberName = Annotated[
    str, typer.Argument(help="A username (or a group name with --group).", show_default=False)
]
RoleOption = Annotated[
    Role, typer.Option("--role", "-r", help="The member's role.", show_default=False, case_sensitive=False)
]
GroupFlag = Annotated[bool, typer.Option("--group", help="NAME is a group (e.g. from LDAP), not a user.")]

MEMBER_COLUMNS = [
    Column("Name", "name"),
    Column("Kind", "kind"),
    Column("Role", "role"),
    Column("Added", "created_at", when),
]


@api_command(member_app, "add")
def add(
    cli: Session, project: ProjectName, name: MemberName, role: RoleOption, group: GroupFlag = False
) -> None:
    """Give a user (or group) a role in a project."""
    body = {"group" if group else "user": name, "role": role.value}
    member = cli.api.post(f"/projects/{segment(project)}/members", body)
    cli.out.done(f"Added {member['kind']} {member['name']} to {project} as {member['role']}.", member)


@api_command(member_app, "list")
def list_members(
    cli: Session,
    project: ProjectName,
    role: Annotated[Role | None, typer.Option("--role", "-r", help="Only members with this role.")] = None,
) -> None:
    """List a project's members."""
    members = cli.api.get_all(f"/projects/{segment(project)}/members", {"role": role.value if role else None})
    cli.out.table(members, MEMBER_COLUMNS, f"No members in {project}.")


@api_command(member_app, "set-role")
def set_role(
    cli: Session, project: ProjectName, name: MemberName, role: RoleOption, group: GroupFlag = False
) -> None:
    """Change a member's role."""
    found = _find(cli, project, name, group)
    member = cli.api.patch(f"/projects/{segment(project)}/members/{found['id']}", {"role": role.value})
    cli.out.done(f"{member['name']} is now {member['role']} in {project}.", member)


@api_command(member_app, "remove")
def remove(cli: Session, project: ProjectName, name: MemberName, group: GroupFlag = False) -> None:
    """Remove a member from a project."""
    found = _find(cli, project, name, group)
    cli.api.delete(f"/projects/{segment(project)}/members/{found['id']}")
    cli.out.done(f"Removed {found['kind']} {name} from {project}.", {**found, "removed": True})


def _find(cli: Session, project: str, name: str, group: bool) -> Any:
    """The member called `name` (the API addresses members by id)."""
    kind = "group" if group else "user"
    candidates = cli.api.get_all(f"/projects/{segment(project)}/members", {"q": name})
    for member in candidates:
        if member["kind"] == kind and member["name"] == name:
            return member
    raise CliError(f"{kind} {name!r} is not a member of project {project!r}")
