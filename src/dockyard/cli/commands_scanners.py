"""`dockyard scanner ...`: external scanners (Harbor pluggable scanner API adapters) and which scanner
the scan jobs use by default (system administrators only). Secrets are asked for (or read from stdin)
and never shown again."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.prompts import ask_secret, stdin_lines
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

scanner_app = typer.Typer(
    no_args_is_help=True, help="Manage external scanners (Harbor pluggable scanner API adapters)."
)

Name = Annotated[str, typer.Argument(help="The scanner's name.", show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

SCANNER_COLUMNS = [
    Column("Name", "name"),
    Column("URL", "url"),
    Column("Auth", "auth"),
    Column("Default", "is_default", lambda value: "yes" if value else ""),
    Column("Updated", "updated_at", when),
]


@api_command(scanner_app, "list")
def list_scanners(cli: Session) -> None:
    """List the external scanners; the default one is marked (none marked: the built-in scanner)."""
    cli.out.table(cli.api.get("/scanners"), SCANNER_COLUMNS, "No external scanners: the built-in one scans.")


@api_command(scanner_app, "add")
def add(
    cli: Session,
    name: Name,
    url: Annotated[str, typer.Option("--url", help="The adapter's base URL (its API is {url}/api/v1).")],
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Basic credentials: this user, and a password.")
    ] = None,
    token: Annotated[bool, typer.Option("--token", help="A bearer token, asked for.")] = False,
    secret_stdin: Annotated[bool, typer.Option("--secret-stdin", help="Read the secret from stdin.")] = False,
    registry_url: Annotated[
        str | None, typer.Option("--registry-url", help="The URL the adapter pulls this registry from.")
    ] = None,
    request_timeout: Annotated[float, typer.Option("--request-timeout", help="Seconds per request.")] = 30.0,
    scan_timeout: Annotated[
        float, typer.Option("--scan-timeout", help="Seconds to wait for a report.")
    ] = 600.0,
    skip_verify: Annotated[bool, typer.Option("--skip-verify", help="Skip TLS checks (tests only).")] = False,
    default: Annotated[bool, typer.Option("--default", help="Make it the default scanner.")] = False,
) -> None:
    """Register an adapter: `dockyard scanner add trivy --url http://trivy:8080 --token --default`."""
    if username is not None and token:
        raise CliError("give --username (basic credentials) or --token, not both")
    body: dict[str, Any] = {
        "name": name,
        "url": url,
        "request_timeout": request_timeout,
        "scan_timeout": scan_timeout,
        "verify_tls": not skip_verify,
        "default": default,
    }
    if registry_url:
        body["registry_url"] = registry_url
    if username is not None or token:
        label = "Token" if token else f"Password of {username}"
        body["auth"] = "token" if token else "basic"
        body["username"] = username
        body["secret"] = stdin_lines(1)[0] if secret_stdin else ask_secret(label)
    elif secret_stdin:
        raise CliError("--secret-stdin needs --username or --token")
    scanner = cli.api.post("/scanners", body)
    cli.out.done(f"Added scanner {scanner['name']} ({scanner['url']}).", scanner)


@api_command(scanner_app, "delete")
def delete(cli: Session, name: Name, yes: Yes = False) -> None:
    """Delete an external scanner (the default goes back to the built-in one if it was)."""
    if not yes:
        typer.confirm(f"Delete scanner {name}?", abort=True, err=True)
    cli.api.delete(f"/scanners/{segment(name)}")
    cli.out.done(f"Deleted scanner {name}.", {"name": name, "deleted": True})


@api_command(scanner_app, "default")
def default(
    cli: Session,
    name: Annotated[
        str | None, typer.Argument(help="A scanner's name, or built-in; none: show it.", show_default=False)
    ] = None,
) -> None:
    """Show or set the scanner the scan jobs use: `dockyard scanner default trivy`, `... built-in`."""
    if name is None:
        answer = cli.api.get("/scanners/default")
        cli.out.done(f"The default scanner is {answer['scanner']}.", answer)
        return
    answer = cli.api.put("/scanners/default", {"scanner": name})
    cli.out.done(f"The default scanner is now {answer['scanner']}.", answer)


@api_command(scanner_app, "test")
def test(cli: Session, name: Name) -> None:
    """Ask the adapter for its metadata from the server. Exits 1 when it fails."""
    result = cli.api.post(f"/scanners/{segment(name)}/test")
    if result["ok"]:
        scanner = result.get("scanner") or {}
        what = " ".join(str(scanner.get(k, "")) for k in ("name", "version")).strip()
        cli.out.done(f"Scanner {name} answers: {what}.", result)
        return
    if cli.out.as_json:
        cli.out.json(result)
    raise CliError(f"scanner {name} failed its check: {result['error']}")
