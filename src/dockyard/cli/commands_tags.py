"""`dockyard tag add|move|delete`: tags of existing artifacts, through the management API (no manifest
is downloaded or uploaded): `add` refuses to take a tag that names another artifact, `move` takes it;
an immutable tag is never moved nor deleted."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client.options import api_command
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.commands_artifacts import Reference, _digest, split_reference

tag_app = typer.Typer(no_args_is_help=True, help="Add, move and delete tags of existing artifacts.")
Tags = Annotated[
    list[str], typer.Argument(help="The tags, in the artifact's repository.", show_default=False)
]


def _set(cli: Session, ref: str, tags: list[str], move: bool) -> None:
    repository, reference = split_reference(ref)
    digest = _digest(cli, repository, reference)  # once: every tag names the same artifact
    done: list[dict[str, Any]] = []
    for tag in tags:
        path = f"/repositories/{segment(repository, keep_slashes=True)}/tags/{segment(tag)}"
        done.append(cli.api.put(path, {"digest": digest, "move": move}))
    moved = [f"{t['name']} (from {t['previous']})" for t in done if t["previous"] not in (None, digest)]
    note = f"; moved {', '.join(moved)}" if moved else ""
    cli.out.done(f"Tagged {repository}@{digest} as {', '.join(tags)}{note}.", done)


@api_command(tag_app, "add")
def add(cli: Session, ref: Reference, tags: Tags) -> None:
    """Give the artifact more tags; a tag that names another artifact now is refused (see `move`)."""
    _set(cli, ref, tags, move=False)


@api_command(tag_app, "move")
def move(cli: Session, ref: Reference, tags: Tags) -> None:
    """Point the tags at the artifact, wherever they point now (new tags are added)."""
    _set(cli, ref, tags, move=True)


@api_command(tag_app, "delete")
def delete(
    cli: Session,
    ref: Annotated[str, typer.Argument(help="REPOSITORY:TAG, e.g. team/app:old.", show_default=False)],
) -> None:
    """Delete a tag; the artifact stays (by digest and its other tags)."""
    if "@" in ref:
        raise typer.BadParameter("a tag (REPOSITORY:TAG) is deleted, not a digest")
    repository, tag = split_reference(ref)
    cli.api.delete(f"/repositories/{segment(repository, keep_slashes=True)}/tags/{segment(tag)}")
    cli.out.done(f"Deleted the tag {repository}:{tag}.", {"repository": repository, "tag": tag})
