"""`dockyard webhook list|create|show|update|delete|test|deliveries`: a project's webhook policies
(project and system administrators). Secrets are asked for (or read from stdin) and never shown again;
custom headers' values are not shown either. See docs/webhooks.md."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.prompts import ask_secret, stdin_lines
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

webhook_app = typer.Typer(no_args_is_help=True, help="Manage a project's webhooks and their delivery log.")

Project = Annotated[str, typer.Argument(help="The project.", show_default=False)]
Name = Annotated[str, typer.Argument(help="The webhook's name.", show_default=False)]
Url = Annotated[str | None, typer.Option("--url", help="Where events are POSTed (https:// or http://).")]
Events = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        "-e",
        help="An event type (repeat): push, pull, delete, quota_warning, quota_exceeded, retention_run, "
        "immutable_refusal, scan_finished, replication_finished.",
    ),
]
Format = Annotated[str | None, typer.Option("--format", help="harbor (default), cloudevents or slack.")]
Secret = Annotated[bool, typer.Option("--secret", help="Sign requests: asks for the HMAC secret.")]
SecretStdin = Annotated[bool, typer.Option("--secret-stdin", help="Read the HMAC secret from stdin.")]
Headers = Annotated[
    list[str] | None, typer.Option("--header", "-H", help="A custom header, `Name: value` (repeat).")
]
SkipVerify = Annotated[
    bool | None, typer.Option("--skip-verify/--verify", help="Skip TLS certificate checks of the target.")
]
Enabled = Annotated[bool | None, typer.Option("--enable/--disable", help="Send events to it, or not.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

COLUMNS = [
    Column("Name", "name"),
    Column("URL", "url"),
    Column("Format", "format"),
    Column("Events", "events", lambda events: ", ".join(events)),
    Column("Enabled", "enabled"),
]
FIELDS = [
    *COLUMNS,
    Column("Signed", "has_secret"),
    Column("Headers", "header_names", lambda names: ", ".join(names)),
    Column("Skip TLS verify", "skip_tls_verify"),
    Column("Created", "created_at", when),
    Column("Updated", "updated_at", when),
]
DELIVERY_COLUMNS = [
    Column("Time", "attempted_at", when),
    Column("Event", "event", lambda value: value or ""),
    Column("Attempt", "attempt", lambda value: "" if value is None else str(value)),
    Column("Status", "status_code", lambda value: "" if value is None else str(value)),
    Column("ms", "duration_ms"),
    Column("Error", "error", lambda value: value or ""),
]


def _path(project: str, name: str | None = None) -> str:
    base = f"/projects/{segment(project)}/webhooks"
    return base if name is None else f"{base}/{segment(name)}"


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, colon, content = value.partition(":")
        if not colon or not name.strip():
            raise CliError(f"a header is `Name: value`, not {value!r}")
        headers[name.strip()] = content.strip()
    return headers


def _secret(secret: bool, secret_stdin: bool) -> str | None:
    if secret_stdin:
        return stdin_lines(1)[0]
    if secret:
        return ask_secret("HMAC secret of the webhook", confirm=True)
    return None


@api_command(webhook_app, "list")
def list_webhooks(cli: Session, project: Project) -> None:
    """List the project's webhooks."""
    cli.out.table(cli.api.get(_path(project)), COLUMNS, f"Project {project} has no webhooks.")


@api_command(webhook_app, "show")
def show(cli: Session, project: Project, name: Name) -> None:
    """Show one webhook (never its secret or header values)."""
    cli.out.record(cli.api.get(_path(project, name)), FIELDS)


@api_command(webhook_app, "create")
def create(
    cli: Session,
    project: Project,
    name: Name,
    url: Url = None,
    events: Events = None,
    format: Format = None,
    secret: Secret = False,
    secret_stdin: SecretStdin = False,
    headers: Headers = None,
    skip_verify: SkipVerify = None,
    enabled: Enabled = None,
) -> None:
    """Create a webhook: `dockyard webhook create team ci --url https://ci.example/hook -e push --secret`."""
    if not url or not events:
        raise CliError("give --url and at least one --event")
    body: dict[str, Any] = {"name": name, "url": url, "events": events, "headers": _headers(headers or [])}
    if format is not None:
        body["format"] = format
    if (value := _secret(secret, secret_stdin)) is not None:
        body["secret"] = value
    if skip_verify is not None:
        body["skip_tls_verify"] = skip_verify
    if enabled is not None:
        body["enabled"] = enabled
    created = cli.api.post(_path(project), body)
    cli.out.done(f"Created webhook {created['name']} of project {project} ({created['url']}).", created)


@api_command(webhook_app, "update")
def update(
    cli: Session,
    project: Project,
    name: Name,
    url: Url = None,
    events: Events = None,
    format: Format = None,
    secret: Secret = False,
    secret_stdin: SecretStdin = False,
    no_secret: Annotated[bool, typer.Option("--no-secret", help="Stop signing requests.")] = False,
    headers: Headers = None,
    no_headers: Annotated[bool, typer.Option("--no-headers", help="Remove every custom header.")] = False,
    skip_verify: SkipVerify = None,
    enabled: Enabled = None,
) -> None:
    """Change a webhook: only what is given changes (--header replaces every custom header)."""
    body: dict[str, Any] = {}
    for key, value in (("url", url), ("events", events), ("format", format), ("enabled", enabled)):
        if value is not None:
            body[key] = value
    if skip_verify is not None:
        body["skip_tls_verify"] = skip_verify
    if no_secret:
        body["secret"] = ""
    elif (value := _secret(secret, secret_stdin)) is not None:
        body["secret"] = value
    if no_headers:
        body["headers"] = {}
    elif headers:
        body["headers"] = _headers(headers)
    if not body:
        raise CliError("nothing to change: give an option such as --url, --event or --disable")
    updated = cli.api.put(_path(project, name), body)
    cli.out.done(f"Updated webhook {name} of project {project}.", updated)


@api_command(webhook_app, "delete")
def delete(cli: Session, project: Project, name: Name, yes: Yes = False) -> None:
    """Delete a webhook, its secret and its delivery log."""
    if not yes:
        typer.confirm(f"Delete webhook {name} of project {project}?", abort=True, err=True)
    cli.api.delete(_path(project, name))
    cli.out.done(f"Deleted webhook {name} of project {project}.", {"name": name, "deleted": True})


@api_command(webhook_app, "test")
def test(cli: Session, project: Project, name: Name) -> None:
    """Send a test event now (a push of `<project>/webhook-test:test`). Exits 1 when it fails."""
    result = cli.api.post(f"{_path(project, name)}/test")
    if result["ok"]:
        cli.out.done(f"Webhook {name} answered {result['status_code']} ({result['duration_ms']} ms).", result)
        return
    if cli.out.as_json:
        cli.out.json(result)
    raise CliError(f"webhook {name} failed its test delivery: {result['error']}")


@api_command(webhook_app, "deliveries")
def deliveries(
    cli: Session,
    project: Project,
    name: Name,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 20,
) -> None:
    """Show the webhook's latest delivery attempts: event, attempt, status code or error, duration."""
    rows = cli.api.get(f"{_path(project, name)}/deliveries", {"limit": limit})
    cli.out.table(rows, DELIVERY_COLUMNS, "No deliveries yet.")
