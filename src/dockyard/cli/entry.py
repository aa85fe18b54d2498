"""The `dockyard` command's entry point. `dockyard serve` starts the server at once, in this process:
loading the CLI (typer, click, every management command) to read that command line took ~0.3 s, and a
second interpreter (`server.exec_server`) to shed those modules again as much. Every other command,
and any `serve` line other than the plain forms below (`--help`, an option serve does not take), goes
to the CLI (`cli/main.py`), which answers it as before.

This module imports nothing at load time: what it loads stays in serve's main process, and in each
HTTP worker Granian forks from it.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

_CONFIG_OPTIONS = ("--config", "-c")


def plain_serve(arguments: list[str]) -> tuple[bool, Path | None]:
    """For `serve`, `serve PATH`, `serve --config PATH` (`-c PATH`, `--config=PATH`): (True, the config
    path or None). (False, None) for anything else, which the CLI parses."""
    if arguments[:1] != ["serve"]:
        return False, None
    rest = arguments[1:]
    if not rest:
        return True, None
    if len(rest) == 1 and rest[0].startswith("--config="):
        value = rest[0].removeprefix("--config=")
        return (True, Path(value)) if value else (False, None)
    if len(rest) == 1 and not rest[0].startswith("-"):
        return True, Path(rest[0])
    if len(rest) == 2 and rest[0] in _CONFIG_OPTIONS and rest[1] and not rest[1].startswith("-"):
        return True, Path(rest[1])
    return False, None


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # for the children; this process's streams below
    # pydantic looks for plugins in every installed distribution's entry points when it builds its
    # first model (~70 ms of CPU at each start in a venv of 100 packages, in this process and the job
    # runner); dockyard uses none. An operator's own value stands.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    plain, config_path = plain_serve(sys.argv[1:])
    if not plain:
        from dockyard.cli.main import main as cli_main

        cli_main()
        return
    for stream in (sys.stdout, sys.stderr):  # as PYTHONUNBUFFERED would: log lines reach a pipe at once
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, write_through=True)
    gc.disable()  # until serve freezes what it imported, before the fork (server.freeze_heap)
    from dockyard.cli.startup_cache import install

    install()  # the code its imports compile from text, kept from the last start (until the fork)
    from dockyard.cli.server import run_server
    from dockyard.cli.slim import load_or_exit

    run_server(load_or_exit(config_path))
