"""A migrated database per test, on SQLite and on a real PostgreSQL the tests start themselves."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from tests.support.server import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian 12's postgresql package


def _postgres_tool(name: str) -> str:
    path = shutil.which(name) or (str(POSTGRES_BIN / name) if (POSTGRES_BIN / name).exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed: install Debian's postgresql package")
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields its admin URL (no database)."""
    initdb, postgres = _postgres_tool("initdb"), _postgres_tool("postgres")
    root = Path(tempfile.mkdtemp(prefix="dockyard-pg-"))
    data = root / "data"
    # PostgreSQL refuses to run as root: run it as the package's `postgres` user.
    as_user = {"user": "postgres"} if os.geteuid() == 0 else {}
    if as_user:
        shutil.chown(root, "postgres")
    subprocess.run(
        [initdb, "-D", str(data), "-U", "dockyard", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True,
        capture_output=True,
        **as_user,  # type: ignore[call-overload]
    )
    port = free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115  (closed after the server stops)
    process = subprocess.Popen(
        [postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root), "-c", "fsync=off"],
        stdout=log,
        stderr=subprocess.STDOUT,
        **as_user,  # type: ignore[call-overload]
    )
    url = f"postgresql+psycopg://dockyard@127.0.0.1:{port}"
    try:
        _wait_until_ready(f"{url}/postgres", process, root / "postgres.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + 30
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{log.read_text(errors='replace')}")
            try:
                with engine.connect():
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


_database_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        server: str = request.getfixturevalue("postgres_server")
        name = f"audit_{os.getpid()}_{next(_database_numbers)}"
        admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = f"{server}/{name}"
    engine = build_engine(url)
    upgrade(engine)
    database = Database(engine)
    yield database
    database.dispose()
