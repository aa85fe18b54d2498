"""`dockyard repo ...`: the repositories you may read."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, size, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

repo_app = typer.Typer(no_args_is_help=True, help="Browse repositories.")

REPOSITORY_COLUMNS = [
    Column("Name", "name"),
    Column("Artifacts", "artifact_count"),
    Column("Tags", "tag_count"),
    Column("Size", "size", size),
    Column("Last push", "pushed_at", when),
]
TAG_COLUMNS = [
    Column("Tag", "name"),
    Column("Digest", "digest"),
    Column("Media type", "media_type"),
    Column("Pushed", "pushed_at", when),
]


@api_command(repo_app, "list")
def list_repositories(
    cli: Session,
    project: Annotated[str | None, typer.Argument(help="Only this project's repositories.")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Part of the name.")] = None,
) -> None:
    """List repositories (of one project, or of all you may read)."""
    repositories = cli.api.get_all("/repositories", {"project": project, "q": query})
    cli.out.table(repositories, REPOSITORY_COLUMNS, "No repositories.")


@api_command(repo_app, "tags")
def list_tags(
    cli: Session,
    repository: Annotated[str, typer.Argument(help="e.g. team/app.", show_default=False)],
) -> None:
    """List a repository's tags."""
    tags = cli.api.get_all(f"/repositories/{segment(repository, keep_slashes=True)}/tags")
    cli.out.table(tags, TAG_COLUMNS, f"No tags in {repository}.")
