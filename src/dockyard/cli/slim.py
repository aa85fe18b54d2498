"""Entry points of `serve`'s long-lived processes that skip the CLI (typer, click, the management
commands): a module the main process or the job runner loads stays in it, and in every HTTP worker
Granian forks from the main process. They read `--config PATH` from argv, as `dockyard serve` and
`dockyard worker` take it, and report a bad config as every command does."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.config.settings import Settings


def config_path_from_argv() -> Path | None:
    arguments = sys.argv[1:]
    if "--config" in arguments and arguments.index("--config") + 1 < len(arguments):
        return Path(arguments[arguments.index("--config") + 1])
    return None


def settings_from_argv() -> tuple[Settings, Path | None]:
    """The settings of `--config PATH` (or DOCKYARD_CONFIG), and that path; exit 2 on a bad config."""
    from dockyard.config.loader import config_error_message, config_path_from_env, load_settings
    from dockyard.datadir import private_umask
    from dockyard.errors import ConfigError

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    private_umask()  # what a server-side process creates is private (dockyard.datadir)
    path = config_path_from_argv() or config_path_from_env()
    try:
        return load_settings(path), path
    except ConfigError as exc:
        sys.stderr.write(f"dockyard: {config_error_message(exc)}\n")
        raise SystemExit(2) from None
