"""`api_command`: registers a typer command that talks to the API, adding the global options to it.

The options (`--server`, `--json`, `--insecure`, `--ca-cert`) are accepted by every such command, after
its own arguments (`dockyard project list --json`), and the command receives a Session built from them
as its first argument. Every CliError it raises is shown as one line on stderr with exit status 1.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.session import GlobalOptions, Session

F = TypeVar("F", bound=Callable[..., None])
PANEL = "Connection and output"
EXIT_FAILURE = 1


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


GLOBAL_PARAMETERS = [
    _option(
        "server",
        Annotated[
            str | None,
            typer.Option(
                "--server",
                envvar="DOCKYARD_SERVER",
                help="Server URL (one you logged in to); default: the last one.",
                rich_help_panel=PANEL,
            ),
        ],
        None,
    ),
    _option(
        "json_output",
        Annotated[
            bool,
            typer.Option("--json", help="Print the API's JSON instead of tables.", rich_help_panel=PANEL),
        ],
        False,
    ),
    _option(
        "insecure",
        Annotated[
            bool,
            typer.Option(
                "--insecure", help="Do not verify the server's TLS certificate.", rich_help_panel=PANEL
            ),
        ],
        False,
    ),
    _option(
        "ca_cert",
        Annotated[
            Path | None,
            typer.Option(
                "--ca-cert",
                envvar="DOCKYARD_CA_CERT",
                exists=True,
                dir_okay=False,
                resolve_path=True,
                help="Trust this CA certificate (PEM) for the server's TLS.",
                rich_help_panel=PANEL,
            ),
        ],
        None,
    ),
]


def api_command(app: typer.Typer, name: str | None = None, **settings: Any) -> Callable[[F], F]:
    """Register the decorated function, whose first parameter is the Session, as a command of `app`."""

    def register(function: F) -> F:
        app.command(name, **settings)(with_global_options(function))
        return function

    return register


def with_global_options(function: Callable[..., None]) -> Callable[..., None]:
    signature = inspect.signature(function, eval_str=True)
    own = list(signature.parameters.values())
    if not own or own[0].name != "cli":
        raise TypeError(f"{function.__name__}: the first parameter must be `cli: Session`")

    @functools.wraps(function)
    def command(**arguments: Any) -> None:
        options = GlobalOptions(
            server=arguments.pop("server"),
            json=arguments.pop("json_output"),
            insecure=arguments.pop("insecure"),
            ca_cert=arguments.pop("ca_cert"),
        )
        session = Session(options)
        try:
            function(session, **arguments)
        except CliError as error:
            session.out.error(session.explain(error))
            raise typer.Exit(EXIT_FAILURE) from None
        finally:
            session.close()

    # typer reads the parameters from the signature: the command's own, then the global options.
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own[1:], *GLOBAL_PARAMETERS]
    )
    return command
