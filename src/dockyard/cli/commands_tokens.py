"""`dockyard token ...`: your personal access tokens, to use instead of your password (docker login, CI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import ApiFailure, CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.prompts import ask_secret, stdin_lines
from dockyard.cli.client.session import Session

token_app = typer.Typer(no_args_is_help=True, help="Manage your personal access tokens.")

TOKEN_COLUMNS = [
    Column("ID", "id"),
    Column("Name", "name"),
    Column("Hint", "hint"),
    Column("Created", "created_at", when),
    Column("Expires", "expires_at", lambda value: when(value) or "never"),
    Column("Last used", "last_used_at", when),
]


@api_command(token_app, "create")
def create(
    cli: Session,
    name: Annotated[
        str, typer.Argument(help="What the token is for, e.g. 'laptop docker'.", show_default=False)
    ],
    expires: Annotated[
        int | None, typer.Option("--expires", min=1, help="Expire after this many days (default: never).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read your password from the first line of stdin.")
    ] = False,
) -> None:
    """Create a token and print its secret (shown only this once). Asks for your password: the
    server makes tokens with a password, never with another token (not the one this CLI keeps)."""
    expires_at = (datetime.now(UTC) + timedelta(days=expires)).isoformat() if expires else None
    password = stdin_lines(1)[0] if password_stdin else ask_secret("Password")
    login = cli.login
    with_password = cli.client(
        login.url,
        (login.username, password),
        insecure=cli.options.insecure or login.insecure,
        ca_cert=str(cli.options.ca_cert) if cli.options.ca_cert else login.ca_cert,
    )
    try:
        token = with_password.post("/me/tokens", {"name": name, "expires_at": expires_at})
    except ApiFailure as failure:
        if failure.status == 401:
            raise CliError(f"wrong password for {login.username} ({failure.detail})") from None
        raise
    cli.out.done(f"Created token {token['id']} ({token['name']}) for {cli.login.username}.", token)
    cli.out.secret("Secret (shown only this once)", token["secret"])


@api_command(token_app, "list")
def list_tokens(cli: Session) -> None:
    """List your tokens (never their secrets); `*` marks the one this CLI uses."""
    tokens = cli.api.get_all("/me/tokens")
    in_use = cli.login.token_id
    if not cli.out.as_json:
        tokens = [{**t, "name": f"{t['name']} *" if t["id"] == in_use else t["name"]} for t in tokens]
    cli.out.table(tokens, TOKEN_COLUMNS, "No tokens.")


@api_command(token_app, "revoke")
def revoke(
    cli: Session,
    token: Annotated[str, typer.Argument(help="The token's ID, or its name.", show_default=False)],
) -> None:
    """Revoke one of your tokens."""
    found = _find(cli, token)
    if found["id"] == cli.login.token_id:
        raise CliError("that is the token this CLI logs in with: use `dockyard logout` instead")
    cli.api.delete(f"/me/tokens/{found['id']}")
    cli.out.done(f"Revoked token {found['id']} ({found['name']}).", {**found, "revoked": True})


def _find(cli: Session, token: str) -> Any:
    tokens = cli.api.get_all("/me/tokens")
    matches = [t for t in tokens if str(t["id"]) == token] or [t for t in tokens if t["name"] == token]
    if not matches:
        raise CliError(f"no token with ID or name {token!r}")
    if len(matches) > 1:
        raise CliError(f"{len(matches)} tokens are named {token!r}: give the ID")
    return matches[0]
