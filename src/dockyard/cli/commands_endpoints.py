"""`dockyard endpoint ...`: registry endpoints, the remote registries the server talks to (system
administrators only). Secrets are asked for (or read from stdin) and never shown again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.prompts import ask_secret, stdin_lines
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

endpoint_app = typer.Typer(no_args_is_help=True, help="Manage registry endpoints (remote registries).")

Name = Annotated[str, typer.Argument(help="The endpoint's name.", show_default=False)]
Url = Annotated[str | None, typer.Option("--url", help="https://host[:port]; docker-hub needs none.")]
Kind = Annotated[
    str | None, typer.Option("--kind", help="docker-hub, registry (any OCI registry), harbor or dockyard.")
]
Username = Annotated[
    str | None,
    typer.Option("--username", "-u", help="Basic credentials: this user, and a password asked for."),
]
Token = Annotated[bool, typer.Option("--token", help="Credentials: a bearer token, asked for.")]
SecretStdin = Annotated[bool, typer.Option("--secret-stdin", help="Read the password or token from stdin.")]
CaFile = Annotated[Path | None, typer.Option("--ca-file", help="Extra CA certificates (PEM) to trust.")]
SkipVerify = Annotated[
    bool | None,
    typer.Option("--skip-verify/--verify", help="Skip TLS certificate checks (test setups only)."),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

ENDPOINT_COLUMNS = [
    Column("Name", "name"),
    Column("Kind", "kind"),
    Column("URL", "url"),
    Column("Auth", "auth"),
    Column("Username", "username"),
    Column("Updated", "updated_at", when),
]
ENDPOINT_FIELDS = [
    *ENDPOINT_COLUMNS[:5],
    Column("Secret set", "has_secret"),
    Column("Verify TLS", "verify_tls"),
    Column("CA bundle", "ca_pem", lambda value: "yes" if value else "no"),
    Column("Created", "created_at", when),
    Column("Updated", "updated_at", when),
]


@api_command(endpoint_app, "list")
def list_endpoints(cli: Session) -> None:
    """List the registry endpoints."""
    cli.out.table(cli.api.get("/endpoints"), ENDPOINT_COLUMNS, "No registry endpoints.")


@api_command(endpoint_app, "show")
def show(cli: Session, name: Name) -> None:
    """Show one endpoint (never its secret)."""
    cli.out.record(cli.api.get(f"/endpoints/{segment(name)}"), ENDPOINT_FIELDS)


@api_command(endpoint_app, "create")
def create(
    cli: Session,
    name: Name,
    url: Url = None,
    kind: Kind = None,
    username: Username = None,
    token: Token = False,
    secret_stdin: SecretStdin = False,
    ca_file: CaFile = None,
    skip_verify: SkipVerify = None,
) -> None:
    """Create an endpoint: `dockyard endpoint create hub --kind docker-hub -u me` (asks for the token)."""
    body: dict[str, Any] = {"name": name, "url": url or "", "kind": kind or "registry"}
    credentials = _credentials(username, token, secret_stdin)
    if credentials is not None:
        body["credentials"] = credentials
    if ca_file is not None:
        body["ca_pem"] = _read_ca(ca_file)
    if skip_verify is not None:
        body["verify_tls"] = not skip_verify
    endpoint = cli.api.post("/endpoints", body)
    cli.out.done(f"Created endpoint {endpoint['name']} ({endpoint['url']}).", endpoint)


@api_command(endpoint_app, "update")
def update(
    cli: Session,
    name: Name,
    url: Url = None,
    kind: Kind = None,
    username: Username = None,
    token: Token = False,
    secret_stdin: SecretStdin = False,
    no_credentials: Annotated[bool, typer.Option("--no-credentials", help="Remove the credentials.")] = False,
    ca_file: CaFile = None,
    no_ca: Annotated[bool, typer.Option("--no-ca", help="Remove the extra CA certificates.")] = False,
    skip_verify: SkipVerify = None,
) -> None:
    """Change an endpoint: only what is given changes (new credentials replace the old)."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = url
    if kind is not None:
        body["kind"] = kind
    if no_credentials:
        body["credentials"] = None
    elif (credentials := _credentials(username, token, secret_stdin)) is not None:
        body["credentials"] = credentials
    if no_ca:
        body["ca_pem"] = None
    elif ca_file is not None:
        body["ca_pem"] = _read_ca(ca_file)
    if skip_verify is not None:
        body["verify_tls"] = not skip_verify
    if not body:
        raise CliError("nothing to change: give an option such as --url or --username")
    endpoint = cli.api.patch(f"/endpoints/{segment(name)}", body)
    cli.out.done(f"Updated endpoint {name}.", endpoint)


@api_command(endpoint_app, "delete")
def delete(cli: Session, name: Name, yes: Yes = False) -> None:
    """Delete an endpoint and its stored credentials."""
    if not yes:
        typer.confirm(f"Delete endpoint {name}?", abort=True, err=True)
    cli.api.delete(f"/endpoints/{segment(name)}")
    cli.out.done(f"Deleted endpoint {name}.", {"name": name, "deleted": True})


@api_command(endpoint_app, "test")
def test(cli: Session, name: Name) -> None:
    """Check the endpoint from the server: `GET /v2/` with its credentials. Exits 1 when it fails."""
    result = cli.api.post(f"/endpoints/{segment(name)}/test")
    if result["ok"]:
        how = f", authenticated with {result['auth']}" if result.get("auth") not in (None, "none") else ""
        cli.out.done(f"Endpoint {name} answers ({result['duration_ms']} ms{how}).", result)
        return
    if cli.out.as_json:
        cli.out.json(result)
    raise CliError(f"endpoint {name} failed its check: {result['error']}")


def _credentials(username: str | None, token: bool, secret_stdin: bool) -> dict[str, Any] | None:
    if username is not None and token:
        raise CliError("give --username (basic credentials) or --token, not both")
    if username is None and not token:
        if secret_stdin:
            raise CliError("--secret-stdin needs --username or --token")
        return None
    label = "Token" if token else f"Password (or access token) of {username}"
    secret = stdin_lines(1)[0] if secret_stdin else ask_secret(label)
    if token:
        return {"kind": "token", "secret": secret}
    return {"kind": "basic", "username": username, "secret": secret}


def _read_ca(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
