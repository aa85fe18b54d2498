"""Project policies: `dockyard project quota NAME [--limit 10GiB]`, `dockyard immutable add|list|remove`."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.commands_projects import ProjectName, project_app

immutable_app = typer.Typer(no_args_is_help=True, help="Manage a project's immutable tag rules.")

_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_UNITS |= {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int | None:
    """`10GiB`, `500MB`, `1.5 TiB`, `12345` (bytes); `none`/`unlimited` for no limit."""
    if text.strip().lower() in ("none", "unlimited", "-1"):
        return None
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise CliError(f"not a size: {text!r} (e.g. 10GiB, 500MB, 12345, or unlimited)")
    return int(float(match.group(1)) * _UNITS[unit])


def human(size: Any) -> str:
    if size is None:
        return "unlimited"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return str(size)


QUOTA_FIELDS = [
    Column("Project", "project"),
    Column("Limit", "limit_bytes", human),
    Column("Used", "used_bytes", human),
    Column("Used %", "used_percent", lambda value: "-" if value is None else f"{value}%"),
    Column("Warn at", "warn_percent", lambda value: f"{value}%"),
]
RULE_COLUMNS = [
    Column("ID", "id"),
    Column("Repositories", lambda r: ("not " if r["repository_excluding"] else "") + r["repository_pattern"]),
    Column("Tags", lambda r: ("not " if r["tag_excluding"] else "") + r["tag_pattern"]),
    Column("Enabled", "enabled", lambda value: "yes" if value else "no"),
]


@api_command(project_app, "quota")
def quota(
    cli: Session,
    name: ProjectName,
    limit: Annotated[
        str | None, typer.Option("--limit", help="Set the limit: 10GiB, 500MB, bytes, or 'unlimited'.")
    ] = None,
    warn: Annotated[
        int | None, typer.Option("--warn", min=1, max=100, help="Warn at this % of the limit.")
    ] = None,
) -> None:
    """Show a project's storage quota and usage; --limit/--warn change it (system administrators)."""
    path = f"/projects/{segment(name)}/quota"
    if limit is None and warn is None:
        cli.out.record(cli.api.get(path), QUOTA_FIELDS)
        return
    current = cli.api.get(path)
    body = {
        "limit_bytes": parse_size(limit) if limit is not None else current["limit_bytes"],
        "warn_percent": warn if warn is not None else current["warn_percent"],
    }
    updated = cli.api.put(path, body)
    cli.out.done(
        f"Quota of {name}: {human(updated['limit_bytes'])}, used {human(updated['used_bytes'])}.", updated
    )


@api_command(immutable_app, "list")
def list_rules(cli: Session, project: ProjectName) -> None:
    """List a project's immutability rules."""
    rules = cli.api.get(f"/projects/{segment(project)}/immutable-rules")
    cli.out.table(rules, RULE_COLUMNS, "No immutability rules.")


@api_command(immutable_app, "add")
def add_rule(
    cli: Session,
    project: ProjectName,
    repositories: Annotated[
        str, typer.Option("--repos", help="Repository pattern inside the project.")
    ] = "**",
    tags: Annotated[str, typer.Option("--tags", help="Tag pattern (doublestar: *, **, ?, {a,b}).")] = "**",
    exclude_repos: Annotated[
        bool, typer.Option("--exclude-repos", help="Repositories NOT matching.")
    ] = False,
    exclude_tags: Annotated[bool, typer.Option("--exclude-tags", help="Tags NOT matching.")] = False,
) -> None:
    """Make matching tags immutable: they cannot be moved to another digest or deleted."""
    body = {
        "repository_pattern": repositories,
        "tag_pattern": tags,
        "repository_excluding": exclude_repos,
        "tag_excluding": exclude_tags,
    }
    rule = cli.api.post(f"/projects/{segment(project)}/immutable-rules", body)
    cli.out.done(f"Added immutability rule {rule['id']} to {project}.", rule)


@api_command(immutable_app, "remove")
def remove_rule(
    cli: Session, project: ProjectName, rule_id: Annotated[int, typer.Argument(help="The rule's id.")]
) -> None:
    """Remove an immutability rule."""
    cli.api.delete(f"/projects/{segment(project)}/immutable-rules/{rule_id}")
    cli.out.done(f"Removed immutability rule {rule_id} from {project}.", {"id": rule_id, "deleted": True})
