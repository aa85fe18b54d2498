"""`dockyard audit`: the audit log, newest first (all of it for administrators; `--project` for members)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session

audit_app = typer.Typer()

_RELATIVE = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}

AUDIT_COLUMNS = [
    # Pulls are counted per hour: "10:00 +1h" with Count 12 is 12 pulls between 10:00 and 11:00.
    Column("Time", lambda event: when(event["occurred_at"]) + (" +1h" if event.get("hourly") else "")),
    Column("Actor", "actor"),
    Column("From", "client_ip"),
    Column("Action", "action"),
    Column(
        "Resource", lambda event: " ".join(filter(None, [event["resource_type"], event["resource_name"]]))
    ),
    Column("Result", "result"),
    Column("Count", "count"),
]


@api_command(audit_app, "audit")
def audit(
    cli: Session,
    actor: Annotated[str | None, typer.Option(help="Exact user or robot name.")] = None,
    action: Annotated[
        str | None, typer.Option(help="e.g. login, login_failed, push, delete, create.")
    ] = None,
    result: Annotated[str | None, typer.Option(help="ok, denied or failed.")] = None,
    project: Annotated[str | None, typer.Option(help="Events about this project's contents.")] = None,
    resource: Annotated[str | None, typer.Option(help="Resource name prefix, e.g. team/app.")] = None,
    client_ip: Annotated[str | None, typer.Option("--from", help="Exact client address.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time: ISO 8601 (2024-05-01T00:00:00Z) or 30m, 12h, 7d ago.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 50,
) -> None:
    """Show the audit log: who did what, from where, when, and the result. Pulls show as counts per
    hour: a `pull` at `10:00 +1h` with count 12 is 12 pulls of that artifact (by digest) by that actor
    between 10:00 and 11:00."""
    params = {
        "actor": actor,
        "action": action,
        "result": result,
        "project": project,
        "resource": resource,
        "client_ip": client_ip,
        "since": _since(since) if since else None,
    }
    events = cli.api.get_all("/audit", params, limit=limit)
    cli.out.table(events, AUDIT_COLUMNS, "No matching events.")


def _since(value: str) -> str:
    relative = _RELATIVE.fullmatch(value.strip())
    if relative:
        amount, unit = relative.groups()
        return (datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})).isoformat()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since {value!r}: give an ISO 8601 time or an age such as 30m, 12h, 7d") from None
    # A time without a zone is the user's local time.
    return (moment if moment.tzinfo else moment.astimezone()).isoformat()
