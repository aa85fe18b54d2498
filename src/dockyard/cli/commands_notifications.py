"""`dockyard notifications list|log`: registry:2 notification endpoints and their delivery log (system
administrators only)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

notifications_app = typer.Typer(
    no_args_is_help=True, help="registry:2 notification endpoints and their delivery log."
)


def _last(endpoint: dict[str, Any]) -> str:
    last = endpoint.get("last")
    if not last:
        return "never"
    answer = str(last["status_code"]) if last["status_code"] is not None else "no answer"
    return f"{when(last['attempted_at'])} {answer}"


ENDPOINT_COLUMNS = [
    Column("Name", "name"),
    Column("URL", "url"),
    Column("State", lambda e: "disabled" if e["disabled"] else ("failing" if e["failures"] else "ok")),
    Column("Pending", "pending"),
    Column("Failures", "failures"),
    Column("Retry after", "retry_after", lambda value: when(value) if value else ""),
    Column("Last delivery", _last),
]
DELIVERY_COLUMNS = [
    Column("Time", "attempted_at", when),
    Column("Status", "status_code", lambda value: "" if value is None else str(value)),
    Column("Events", "events"),
    Column("Event ids", lambda d: f"{d['first_event_id']}-{d['last_event_id']}"),
    Column("ms", "duration_ms"),
    Column("Error", "error", lambda value: value or ""),
]


@api_command(notifications_app, "list")
def list_endpoints(cli: Session) -> None:
    """List the notification endpoints of the config, with the events waiting for each."""
    endpoints = cli.api.get("/notifications")
    cli.out.table(endpoints, ENDPOINT_COLUMNS, "No notification endpoints are configured.")


@api_command(notifications_app, "log")
def delivery_log(
    cli: Session,
    name: Annotated[str, typer.Argument(help="The endpoint's name.", show_default=False)],
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 20,
) -> None:
    """Show an endpoint's latest deliveries: status codes, errors, events carried."""
    deliveries = cli.api.get(f"/notifications/{segment(name)}/deliveries", {"limit": limit})
    cli.out.table(deliveries, DELIVERY_COLUMNS, "No deliveries yet.")
