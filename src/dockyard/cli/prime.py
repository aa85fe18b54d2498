"""`python -m dockyard.cli.prime [--config PATH]`: write, ahead of the server, what `dockyard serve`
compiles on its way to its first answer, into an install the server itself cannot write to.

Serve's first start on a host leaves the bytecode of what it imports (`.pyc` files) and the table of
the code it compiles from text (cli/startup_cache.py) beside dockyard's modules, and each later start
reads both. Where serve runs as a user who cannot write the install (the container image, whose
`/opt/dockyard` belongs to root while serve runs as 10000; a root-owned venv under systemd's
`ProtectSystem=strict`), nothing is kept, and every start compiled it all again: ~0.1 s of CPU before
the workers fork, on the way to the first answer (issue 18). Run this as the install's owner after
installing or upgrading (the image's build does: deploy/Dockerfile). It imports what serve's main
process imports before the fork for the configuration given (`--config PATH`, else the file and
variables serve would read), so that Python writes their bytecode, and it writes the table, readable
by every user: it refuses to run with a umask that would take that away (077, say). It starts
nothing, opens no database and leaves the data directory alone.

A start with another configuration (another auth mode or storage driver) compiles at each start what
this run did not import; run it for that configuration too (its entries are added to the table).

Like `cli.entry`, this module imports nothing at load time: the table is installed before the imports
serve makes begin, and they are made in serve's order.
"""

from __future__ import annotations

import gc
import os
import sys

USAGE = "usage: python -m dockyard.cli.prime [--config PATH]\n"
READABLE_UMASK = 0o022


def main(arguments: list[str]) -> int:
    from dockyard.cli.entry import plain_serve

    plain, config_path = plain_serve(["serve", *arguments])  # the config path as `serve` takes it
    if not plain:
        sys.stderr.write(USAGE)
        return 2
    if sys.dont_write_bytecode:
        sys.stderr.write("dockyard: PYTHONDONTWRITEBYTECODE is set, so nothing would be written: unset it\n")
        return 2
    umask = os.umask(READABLE_UMASK)
    os.umask(umask)
    if umask & ~READABLE_UMASK:  # the .pyc files of the modules loaded before this line have it already
        sys.stderr.write(
            f"dockyard: with umask {umask:03o}, what this writes is unreadable to the user serve runs as: "
            f"run it with umask {READABLE_UMASK:03o}\n"
        )
        return 2
    # From here on, as `dockyard serve` starts (cli.entry, then server.run_server up to the fork).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    gc.disable()
    from dockyard.cli import startup_cache

    startup_cache.install()
    from dockyard.cli import server
    from dockyard.config.loader import config_error_message, config_path_from_env, load_settings
    from dockyard.errors import ConfigError
    from dockyard.observability.logging import configure_logging

    try:  # as slim.load_or_exit, without its private umask
        settings = load_settings(config_path or config_path_from_env())
    except ConfigError as exc:
        sys.stderr.write(f"dockyard: {config_error_message(exc)}\n")
        return 2
    configure_logging(settings.log.level, settings.log.formatter, settings.log.fields)
    server._import_for_prepare(settings)
    server._preload_worker_modules(settings)
    server.event_loop()
    import tempfile
    from pathlib import Path

    import granian.constants
    import granian.http  # noqa: F401

    from dockyard.api.drain import DrainState
    from dockyard.observability.metrics import prepare_multiprocess

    # Serve's steps on the data directory that compile patterns (their globs), on a scratch directory.
    with tempfile.TemporaryDirectory(prefix="dockyard-prime-") as scratch:
        prepare_multiprocess(Path(scratch) / "metrics")
        DrainState(Path(scratch) / "drain").reset()
    startup_cache.save_and_uninstall(whenever_new=True)
    cache = startup_cache.last
    if cache is None:  # not CPython 3.11 (startup_cache.SUPPORTED): the bytecode only
        print("dockyard: bytecode written; this Python keeps no table of code compiled from text")
        return 0
    print(
        f"dockyard: {startup_cache.table_path()}: {cache.kept} entries for this configuration, "
        f"{cache.compiled} of them new"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
