"""`dockyard project ...`: projects, the first component of repository names (`team` in `team/app`)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

project_app = typer.Typer(no_args_is_help=True, help="Manage projects.")

ProjectName = Annotated[str, typer.Argument(help="The project's name.", show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def visibility(public: object) -> str:
    return "public" if public else "private"


def access(permissions: object) -> str:
    """The caller's permissions in a word (`project show` and --json list them all)."""
    granted = set(permissions) if isinstance(permissions, list) else set()
    for permission, word in (("project.update", "admin"), ("delete", "delete"), ("push", "push")):
        if permission in granted:
            return word
    return "pull" if "pull" in granted else "none"


PROJECT_COLUMNS = [
    Column("Name", "name"),
    Column("Visibility", "public", visibility),
    Column("Your access", "permissions", access),
    Column("Created", "created_at", when),
]
PROJECT_FIELDS = [
    Column("Name", "name"),
    Column("Visibility", "public", visibility),
    Column("Repositories", "repository_count"),
    Column("Created", "created_at", when),
    Column("Your permissions", "permissions"),
]


@api_command(project_app, "create")
def create(
    cli: Session,
    name: ProjectName,
    public: Annotated[bool, typer.Option("--public", help="Anyone may pull, anonymous users too.")] = False,
) -> None:
    """Create a project (system administrators); you become its project admin."""
    project = cli.api.post("/projects", {"name": name, "public": public})
    cli.out.done(f"Created {visibility(project['public'])} project {project['name']}.", project)


@api_command(project_app, "list")
def list_projects(
    cli: Session,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Part of the name.")] = None,
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Only public, or only private projects.")
    ] = None,
) -> None:
    """List the projects you may see."""
    projects = cli.api.get_all("/projects", {"q": query, "public": public})
    cli.out.table(projects, PROJECT_COLUMNS, "No projects.")


@api_command(project_app, "show")
def show(cli: Session, name: ProjectName) -> None:
    """Show a project."""
    cli.out.record(cli.api.get(f"/projects/{segment(name)}"), PROJECT_FIELDS)


@api_command(project_app, "update")
def update(
    cli: Session,
    name: ProjectName,
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Make the project public or private.")
    ] = None,
) -> None:
    """Change a project's settings."""
    if public is None:
        raise CliError("nothing to change: pass --public or --private")
    project = cli.api.patch(f"/projects/{segment(name)}", {"public": public})
    cli.out.done(f"Project {name} is now {visibility(project['public'])}.", project)


@api_command(project_app, "delete")
def delete(cli: Session, name: ProjectName, yes: Yes = False) -> None:
    """Delete an empty project, with its members and robots."""
    if not yes:
        typer.confirm(f"Delete project {name}, its members and its robots?", abort=True, err=True)
    cli.api.delete(f"/projects/{segment(name)}")
    cli.out.done(f"Deleted project {name}.", {"name": name, "deleted": True})
