"""Entry points of `serve`'s long-lived processes that skip the CLI (typer, click, the management
commands): a module the main process or the job runner loads stays in it, and in every HTTP worker
Granian forks from the main process. They run on the settings serve handed down; started otherwise,
they read `--config PATH` from argv, as `dockyard serve` and `dockyard worker` take it, and report a
bad config as every command does."""

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


def server_settings() -> Settings:
    """The settings `serve` validated and handed down (config.loader.hand_down) when it started this
    process, else those of `--config PATH` (or DOCKYARD_CONFIG); exit 2 on a bad config."""
    from dockyard.config.loader import handed_down

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    settings = handed_down()
    if settings is not None:
        from dockyard.datadir import private_umask

        private_umask()  # what a server-side process creates is private (dockyard.datadir)
        return settings
    return load_or_exit(config_path_from_argv())


def load_or_exit(config_path: Path | None) -> Settings:
    """The settings of `config_path` (else DOCKYARD_CONFIG's file, else none) and the environment; exit
    2 with one line naming the key on a bad config, as every command does."""
    from dockyard.config.loader import config_error_message, config_path_from_env, load_settings
    from dockyard.datadir import private_umask
    from dockyard.errors import ConfigError

    private_umask()  # what a server-side process creates is private (dockyard.datadir)
    try:
        return load_settings(config_path or config_path_from_env())
    except ConfigError as exc:
        sys.stderr.write(f"dockyard: {config_error_message(exc)}\n")
        raise SystemExit(2) from None
