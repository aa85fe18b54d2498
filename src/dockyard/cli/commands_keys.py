"""`dockyard keys ...`: the keys registry tokens are signed with (system administrators only).

Rotate to start signing with a new key; retire the old one once the tokens it signed should stop
working (clients fetch new tokens on their own, a token lives minutes). Other workers and nodes
follow a change within about two minutes.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session

keys_app = typer.Typer(no_args_is_help=True, help="Rotate and retire the token signing keys.")

KEY_COLUMNS = [
    Column("Key ID", "kid"),
    Column("Status", "status"),
    Column("Created", "created_at", when),
    Column("Retired", "retired_at", when),
]


@api_command(keys_app, "list")
def list_keys(cli: Session) -> None:
    """List the signing keys, oldest first (never their key material)."""
    cli.out.table(cli.api.get("/system/signing-keys"), KEY_COLUMNS, "No signing keys yet.")


@api_command(keys_app, "rotate")
def rotate(cli: Session) -> None:
    """Create a new key that signs every new token; older keys keep verifying until retired."""
    key = cli.api.post("/system/signing-keys/rotate")
    cli.out.done(f"New signing key {key['kid']}.", key)


@api_command(keys_app, "retire")
def retire(
    cli: Session,
    kid: Annotated[str, typer.Argument(help="The key's ID, from `dockyard keys list`.", show_default=False)],
) -> None:
    """Retire a key: tokens it signed are refused from now on (everywhere within about two minutes)."""
    key = cli.api.post(f"/system/signing-keys/{quote(kid, safe='')}/retire")
    cli.out.done(f"Retired signing key {key['kid']}.", key)
