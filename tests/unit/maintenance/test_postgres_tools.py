"""Which pg_dump/pg_restore a backup runs, and how it connects without showing the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.errors import ConfigError
from dockyard.maintenance.postgres_tools import find_tool, libpq_target


def install(lib: Path, major: int, name: str) -> Path:
    tool = lib / str(major) / "bin" / name
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return tool


def test_the_tool_of_the_servers_major_version_wins(tmp_path: Path) -> None:
    for major in (13, 15, 16):
        install(tmp_path, major, "pg_dump")
    assert find_tool("pg_dump", 15, lib=tmp_path) == str(tmp_path / "15" / "bin" / "pg_dump")


def test_else_the_nearest_newer_version_never_an_older_one(tmp_path: Path) -> None:
    install(tmp_path, 13, "pg_dump")
    install(tmp_path, 17, "pg_dump")
    install(tmp_path, 16, "pg_dump")
    assert find_tool("pg_dump", 14, lib=tmp_path) == str(tmp_path / "16" / "bin" / "pg_dump")


def test_no_tool_new_enough_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, 13, "pg_restore")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="postgresql-client-99"):
        find_tool("pg_restore", 99, lib=tmp_path)


def test_the_password_travels_in_the_environment_not_the_command_line() -> None:
    uri, env = libpq_target(
        "postgresql+psycopg://dockyard:s3cr%40t@db.internal:5433/registry?sslmode=require"
    )
    assert uri == "postgresql://dockyard@db.internal:5433/registry?sslmode=require"
    assert env == {"PGPASSWORD": "s3cr@t"}
    assert libpq_target("postgresql://dockyard@127.0.0.1/registry") == (
        "postgresql://dockyard@127.0.0.1/registry",
        {},
    )
