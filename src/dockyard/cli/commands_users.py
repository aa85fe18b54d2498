"""`dockyard user ...`: accounts (system administrators), and `user passwd` for your own password."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.prompts import ask_secret, stdin_lines
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

user_app = typer.Typer(no_args_is_help=True, help="Manage user accounts.")

Username = Annotated[str, typer.Argument(help="The account's username.", show_default=False)]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin instead of asking.")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

USER_COLUMNS = [
    Column("Username", "username"),
    Column("Admin", "admin"),
    Column("Disabled", "disabled"),
    Column("Source", "source"),
    Column("Email", "email"),
    Column("Created", "created_at", when),
    Column("Last login", "last_login_at", when),
]
USER_FIELDS = [*USER_COLUMNS[:1], Column("Display name", "display_name"), *USER_COLUMNS[1:]]


@api_command(user_app, "create")
def create(
    cli: Session,
    username: Username,
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    display_name: Annotated[str | None, typer.Option(help="Full name.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make a system administrator.")] = False,
    password_stdin: PasswordStdin = False,
    oidc: Annotated[
        bool,
        typer.Option(
            "--oidc",
            help="A single sign-on user, who logs in at the OpenID provider: no password (for "
            "auth.oidc.auto_onboard: false).",
        ),
    ] = False,
) -> None:
    """Create a local user (asks for the password, or reads it from stdin), or with --oidc a single
    sign-on user."""
    if oidc:
        password, source = None, "oidc"
    else:
        password = stdin_lines(1)[0] if password_stdin else ask_secret("Password", confirm=True)
        source = "local"
    body = {
        "username": username,
        "password": password,
        "source": source,
        "email": email,
        "display_name": display_name,
        "admin": admin,
    }
    user = cli.api.post("/users", body)
    cli.out.done(f"Created user {user['username']}{' (administrator)' if user['admin'] else ''}.", user)


@api_command(user_app, "list")
def list_users(
    cli: Session,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Part of a name or email.")] = None,
    admins: Annotated[
        bool | None, typer.Option("--admins/--non-admins", help="Only administrators, or only others.")
    ] = None,
) -> None:
    """List users."""
    users = cli.api.get_all("/users", {"q": query, "admin": admins})
    cli.out.table(users, USER_COLUMNS, "No users.")


@api_command(user_app, "show")
def show(cli: Session, username: Username) -> None:
    """Show one user."""
    cli.out.record(cli.api.get(f"/users/{segment(username)}"), USER_FIELDS)


@api_command(user_app, "disable")
def disable(cli: Session, username: Username) -> None:
    """Disable an account: it can no longer log in, and its tokens stop working."""
    user = _update(cli, username, {"disabled": True})
    cli.out.done(f"Disabled user {username}.", user)


@api_command(user_app, "enable")
def enable(cli: Session, username: Username) -> None:
    """Enable a disabled account again."""
    user = _update(cli, username, {"disabled": False})
    cli.out.done(f"Enabled user {username}.", user)


@api_command(user_app, "delete")
def delete(cli: Session, username: Username, yes: Yes = False) -> None:
    """Delete an account."""
    if not yes:
        typer.confirm(f"Delete user {username}?", abort=True, err=True)
    cli.api.delete(f"/users/{segment(username)}")
    cli.out.done(f"Deleted user {username}.", {"username": username, "deleted": True})


@api_command(user_app, "passwd")
def passwd(
    cli: Session,
    username: Annotated[
        str | None,
        typer.Argument(help="Set this user's password (administrators); default: change your own."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read from stdin: the new password; for your own, the current one first, then the new.",
        ),
    ] = False,
) -> None:
    """Change your password, or set another user's."""
    if username is None:
        if password_stdin:
            current, new = stdin_lines(2)
        else:
            current = ask_secret("Current password")
            new = ask_secret("New password", confirm=True)
        cli.api.put("/me/password", {"current_password": current, "new_password": new})
        cli.out.done("Password changed.", {"username": cli.login.username, "changed": True})
        return
    new = stdin_lines(1)[0] if password_stdin else ask_secret("New password", confirm=True)
    cli.api.put(f"/users/{segment(username)}/password", {"password": new})
    cli.out.done(f"Password of {username} set.", {"username": username, "changed": True})


def _update(cli: Session, username: str, changes: dict[str, Any]) -> Any:
    return cli.api.patch(f"/users/{segment(username)}", changes)
