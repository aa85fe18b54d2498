"""`dockyard login`, `logout` and `whoami`.

Login checks the password against the server (GET /api/v1/me), then trades it for a personal access
token that it stores: the password itself is never written anywhere. Logout revokes that token.
"""

from __future__ import annotations

import contextlib
import socket
from datetime import UTC, datetime
from typing import Annotated

import typer

from dockyard.cli.client.config import ServerLogin, normalize_server_url
from dockyard.cli.client.errors import ApiFailure, CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.prompts import ask_secret, ask_username, stdin_lines
from dockyard.cli.client.session import Session

session_app = typer.Typer()

ServerArgument = Annotated[
    str | None, typer.Argument(help="Server URL, e.g. https://registry.example.com:5000.", show_default=False)
]


@api_command(session_app, "login")
def login(
    cli: Session,
    url: ServerArgument = None,
    username: Annotated[str | None, typer.Option("--username", "-u", help="Default: ask.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Log in to a dockyard server and keep a personal access token for the other commands."""
    server = normalize_server_url(_server_of(cli, url))
    name = username or ask_username()
    password = stdin_lines(1)[0] if password_stdin else ask_secret("Password")
    insecure = cli.options.insecure
    ca_cert = str(cli.options.ca_cert) if cli.options.ca_cert else None
    client = cli.client(server, (name, password), insecure=insecure, ca_cert=ca_cert)
    try:
        me = client.get("/me")
    except ApiFailure as failure:
        if failure.status == 401:
            message = f"login to {server} failed: wrong username or password ({failure.detail})"
            raise CliError(message) from None
        raise
    if me["kind"] != "user":
        raise CliError(
            "robot accounts cannot log in with the CLI: give their secret to docker, podman or skopeo"
        )
    created = client.post("/me/tokens", {"name": _token_name()})
    previous = cli.config.servers.get(server)
    cli.config.remember(ServerLogin(server, me["name"], created["secret"], created["id"], insecure, ca_cert))
    cli.save()
    if previous is not None:
        _revoke_quietly(cli, previous)
    cli.out.done(
        f"Logged in to {server} as {me['name']}{' (system administrator)' if me['admin'] else ''}.",
        {"server": server, "username": me["name"], "admin": me["admin"], "token_id": created["id"]},
    )


@api_command(session_app, "logout")
def logout(cli: Session, url: ServerArgument = None) -> None:
    """Revoke the CLI's token on the server and forget it here."""
    stored = cli.config.login_for(url or cli.options.server)
    try:
        _revoke(cli, stored)
    except CliError as error:
        cli.out.note(f"warning: could not revoke the token on the server ({error.message}); forgot it here")
    cli.config.forget(stored.url)
    cli.save()
    cli.out.done(f"Logged out of {stored.url}.", {"server": stored.url, "username": stored.username})


@api_command(session_app, "whoami")
def whoami(cli: Session) -> None:
    """Who the stored login is on the server."""
    me = cli.api.get("/me")
    user = me.get("user") or {}
    item = {**me, "server": cli.login.url}
    fields = [
        Column("Server", "server"),
        Column("Name", "name"),
        Column("Kind", "kind"),
        Column("Administrator", "admin"),
        Column("Email", lambda _: user.get("email")),
        Column("Last login", lambda _: user.get("last_login_at"), when),
    ]
    cli.out.record(item, fields)


def _server_of(cli: Session, url: str | None) -> str:
    if url:
        return url
    if cli.options.server:
        return cli.options.server
    raise CliError("which server? `dockyard login URL`")


def _token_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"dockyard CLI on {socket.gethostname()} ({stamp})"


def _revoke(cli: Session, stored: ServerLogin) -> None:
    if stored.token_id is None:
        return
    client = cli.client(
        stored.url, (stored.username, stored.token), insecure=stored.insecure, ca_cert=stored.ca_cert
    )
    try:
        client.delete(f"/me/tokens/{stored.token_id}")
    except ApiFailure as failure:
        if failure.status not in (401, 404):  # already revoked or expired: nothing left to do
            raise


def _revoke_quietly(cli: Session, stored: ServerLogin) -> None:
    """A new login replaced `stored`: its token is of no more use, so revoke it if the server still can."""
    with contextlib.suppress(CliError):
        _revoke(cli, stored)
