"""PostgreSQL's own client tools (`pg_dump`, `pg_restore`), found and run for backup and restore.

pg_dump refuses a server newer than itself, and pg_restore may not read an archive a newer pg_dump
wrote, so each tool is taken from the installed PostgreSQL version matching the server's major
version (Debian's postgresql-client-N puts it in /usr/lib/postgresql/N/bin), or the nearest newer one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.engine import URL, make_url

from dockyard.db.engine import normalise_url
from dockyard.errors import ConfigError
from dockyard.maintenance.interfaces import MaintenanceError

POSTGRES_LIB = Path("/usr/lib/postgresql")
TOOL_TIMEOUT = 24 * 3600.0  # a dump of a large database takes long; a hung one still ends


def server_major_version(connection: Connection) -> int:
    return int(connection.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000


def find_tool(name: str, server_major: int, lib: Path = POSTGRES_LIB) -> str:
    """The path of `name` from PostgreSQL `server_major`, or the nearest newer installed version."""
    installed = sorted(
        (int(version.name), version / "bin" / name)
        for version in (lib.iterdir() if lib.is_dir() else [])
        if version.name.isdigit() and (version / "bin" / name).is_file()
    )
    for major, path in installed:
        if major >= server_major:
            return str(path)
    on_path = shutil.which(name)
    if on_path is not None and _tool_major(on_path) >= server_major:
        return on_path
    raise ConfigError(
        f"{name} for PostgreSQL {server_major} (or newer) is not installed: install Debian's "
        f"postgresql-client-{server_major} (or your distribution's PostgreSQL {server_major} client tools)"
    )


def _tool_major(path: str) -> int:
    try:
        output = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    found = re.search(r"(\d+)(?:\.\d+)?", output)
    return int(found.group(1)) if found else 0


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for a database.url, and the environment that carries its password (so
    the password never shows in a process listing)."""
    parsed = make_url(normalise_url(url))
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    without_password = URL.create(
        "postgresql", parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query
    )
    uri = without_password.render_as_string(hide_password=False)
    return uri, env


def run_tool(command: list[str], env: dict[str, str]) -> None:
    """Run a PostgreSQL tool; a failure is a MaintenanceError carrying the end of its stderr."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise MaintenanceError(f"{Path(command[0]).name} could not run: {exc}") from exc
    if done.returncode != 0:
        raise MaintenanceError(
            f"{Path(command[0]).name} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
