"""`dockyard robot ...`: robot accounts for CI, system-wide (`robot$ci`) or per project (`robot$team+ci`).

A robot is named by its short name plus `--project`, or by its full name (`robot$team+ci`), from which
the project is read. Secrets are shown once: on create and on refresh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

robot_app = typer.Typer(no_args_is_help=True, help="Manage robot accounts (for CI and automation).")

ROBOT_PREFIX = "robot$"
ACTIONS = ("pull", "push", "delete")

RobotName = Annotated[
    str,
    typer.Argument(help="Short name with --project, or the full name (robot$team+ci).", show_default=False),
]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="The robot's project (default: a system robot).")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def permissions_text(permissions: Any) -> str:
    return "; ".join(f"{p['project']}: {','.join(p['actions'])}" for p in permissions or [])


def status(robot: dict[str, Any]) -> str:
    return "disabled" if robot["disabled"] else "expired" if robot["expired"] else "active"


ROBOT_COLUMNS = [
    Column("Name", "name"),
    Column("Permissions", "permissions", permissions_text),
    Column("Status", status),
    Column("Expires", "expires_at", lambda value: when(value) or "never"),
    Column("Created", "created_at", when),
    Column("Description", "description"),
]
ROBOT_FIELDS = [
    Column("Name", "name"),
    Column("Level", "level"),
    Column("Project", "project"),
    *ROBOT_COLUMNS[1:],
]


@api_command(robot_app, "create")
def create(
    cli: Session,
    name: RobotName,
    permission: Annotated[
        list[str],
        typer.Option(
            "--permission",
            help="PROJECT:ACTIONS, e.g. team:pull,push (repeatable; actions: pull, push, delete). "
            "A project robot may leave out PROJECT.",
            show_default=False,
        ),
    ],
    project: ProjectOption = None,
    expires: Annotated[
        int | None, typer.Option("--expires", min=1, help="Expire after this many days (default: never).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the robot is for.")] = None,
) -> None:
    """Create a robot account and print its secret (shown only this once)."""
    short, project = _split(name, project)
    wanted = _parse_permissions(permission, project)
    expires_at = (datetime.now(UTC) + timedelta(days=expires)).isoformat() if expires else None
    body: dict[str, Any] = {"name": short, "description": description, "expires_at": expires_at}
    if project is None:
        body["permissions"] = [{"project": p, "actions": actions} for p, actions in wanted.items()]
    else:
        body["actions"] = wanted[project]
    robot = cli.api.post(_base(project), body)
    expiry = f"expires {when(robot['expires_at'])}" if robot["expires_at"] else "never expires"
    cli.out.done(f"Created {robot['name']} ({permissions_text(robot['permissions'])}; {expiry}).", robot)
    cli.out.secret("Secret (shown only this once)", robot["secret"])


@api_command(robot_app, "list")
def list_robots(cli: Session, project: ProjectOption = None) -> None:
    """List system robots (administrators), or a project's robots with --project."""
    robots = cli.api.get_all(_base(project))
    cli.out.table(robots, ROBOT_COLUMNS, "No robots.")


@api_command(robot_app, "show")
def show(cli: Session, name: RobotName, project: ProjectOption = None) -> None:
    """Show a robot account."""
    cli.out.record(cli.api.get(_path(name, project)), ROBOT_FIELDS)


@api_command(robot_app, "refresh")
def refresh(cli: Session, name: RobotName, project: ProjectOption = None) -> None:
    """Give a robot a new secret (printed once); the old one stops working."""
    answer = cli.api.post(f"{_path(name, project)}/secret")
    cli.out.done(f"New secret for {answer['name']}; the old one no longer works.", answer)
    cli.out.secret("Secret (shown only this once)", answer["secret"])


@api_command(robot_app, "disable")
def disable(cli: Session, name: RobotName, project: ProjectOption = None) -> None:
    """Disable a robot: its secret stops working until it is enabled again."""
    robot = cli.api.patch(_path(name, project), {"disabled": True})
    cli.out.done(f"Disabled {robot['name']}.", robot)


@api_command(robot_app, "enable")
def enable(cli: Session, name: RobotName, project: ProjectOption = None) -> None:
    """Enable a disabled robot again."""
    robot = cli.api.patch(_path(name, project), {"disabled": False})
    cli.out.done(f"Enabled {robot['name']}.", robot)


@api_command(robot_app, "delete")
def delete(cli: Session, name: RobotName, project: ProjectOption = None, yes: Yes = False) -> None:
    """Delete a robot account."""
    if not yes:
        typer.confirm(f"Delete robot {name}?", abort=True, err=True)
    cli.api.delete(_path(name, project))
    cli.out.done(f"Deleted robot {name}.", {"name": name, "deleted": True})


def _split(name: str, project: str | None) -> tuple[str, str | None]:
    """(short name, project or None) from a short name plus --project, or from a full name."""
    if not name.startswith(ROBOT_PREFIX):
        return name, project
    owner, plus, short = name.removeprefix(ROBOT_PREFIX).partition("+")
    named_project = owner if plus else None
    short = short if plus else owner
    if project is not None and project != named_project:
        raise CliError(f"{name} is not a robot of project {project!r}")
    return short, named_project


def _base(project: str | None) -> str:
    return "/robots" if project is None else f"/projects/{segment(project)}/robots"


def _path(name: str, project: str | None) -> str:
    short, project = _split(name, project)
    return f"{_base(project)}/{segment(short)}"


def _parse_permissions(specs: list[str], project: str | None) -> dict[str, list[str]]:
    """{project: actions} from `PROJECT:ACTION,ACTION` specs (a project robot's may be just `ACTION,...`)."""
    wanted: dict[str, list[str]] = {}
    for spec in specs:
        target, colon, actions_text = spec.rpartition(":")
        if not colon:
            if project is None:
                raise CliError(f"--permission {spec!r}: a system robot needs PROJECT:ACTIONS, e.g. team:pull")
            target = project
        if project is not None and target != project:
            raise CliError(
                f"--permission {spec!r}: a robot of project {project!r} has permissions there only"
            )
        actions = [action.strip() for action in actions_text.split(",") if action.strip()]
        unknown = sorted(set(actions) - set(ACTIONS))
        if not target or not actions or unknown:
            raise CliError(
                f"--permission {spec!r}: expected PROJECT:ACTIONS, actions from {', '.join(ACTIONS)}"
            )
        merged = set(wanted.get(target, [])) | set(actions)
        wanted[target] = [action for action in ACTIONS if action in merged]
    if not wanted:
        raise CliError("give at least one --permission PROJECT:ACTIONS")
    return wanted
