"""A throwaway PostgreSQL cluster on a free loopback port, started by the tests and removed after.

Debian 12's `postgresql` package puts the server binaries in /usr/lib/postgresql/15/bin. PostgreSQL
refuses to run as root, so when the tests run as root the cluster runs as the package's `postgres` user.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from tests.support.processes import stop_process
from tests.support.server import free_port
from tests.support.sqlite_template import copy_migrated_sqlite

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
READY_TIMEOUT = 30.0
# Where clusters live: a tmpfs when the machine has one. Making a database creates ~1,000 files, and
# ext4 under the suite's churn (whole clusters removed in the background) spent ~170-300 ms of CPU on
# each in inode allocation, 18 ms on tmpfs: the PostgreSQL pass makes a database per server and per unit
# test. The databases of a finished test module are dropped (drop_unused_databases), so what stays in
# memory is the template and the databases in use, not one per test.
RAM_DIR = Path("/dev/shm")


def _cluster_parent() -> str | None:
    """RAM_DIR if it is a tmpfs, else None (the temp dir)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    on_tmpfs = any(line.split()[1:3] == [str(RAM_DIR), "tmpfs"] for line in mounts if len(line.split()) > 2)
    return str(RAM_DIR) if on_tmpfs else None


def postgres_tool(name: str) -> str:
    """The path of a PostgreSQL server binary; missing is a failure (install Debian's `postgresql`)."""
    path = shutil.which(name) or (str(POSTGRES_BIN / name) if (POSTGRES_BIN / name).exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed: install Debian's postgresql package")
    return path


@dataclass
class PostgresServer:
    """A running PostgreSQL the tests may make databases on (their own, or one shared by the test processes
    of a run: tests/support/postgres_shared.py)."""

    url: str  # the server's URL without a database, e.g. postgresql+psycopg://dockyard@127.0.0.1:PORT

    def database_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    def create_database(self, prefix: str = "dockyard", migrated: bool = False) -> str:
        """A new database (unique name on this server, whatever process asks); returns its URL. Empty, or
        with `migrated` a copy of one upgraded to every migration head (see `migrated_template`)."""
        name = f"{prefix}_{os.getpid()}_{next(_database_numbers)}"
        _create_database(self.database_url("postgres"), name, migrated)
        return self.database_url(name)


_database_numbers = itertools.count()


@dataclass
class PostgresCluster(PostgresServer):
    """A cluster this process started (start_postgres) and stops."""

    root: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
        stop_process(self.process, signal.SIGINT, grace=30)
        remove_in_background(self.root)


def remove_in_background(path: Path) -> None:
    """`rm -rf path` in a process of its own that outlives this one. A worker's cluster holds a database
    per test by the end of the PostgreSQL pass (2 GB and more, ~15 MB each): removing it took 15-30 s
    at the session's end, which the test run waited for (shown as the teardown of the worker's last
    test). `sh` exits at once and rm goes on without a parent to wait for it."""
    command = ["sh", "-c", 'rm -rf -- "$1" </dev/null >/dev/null 2>&1 &', "sh", str(path)]
    subprocess.run(command, check=True, start_new_session=True, stdin=subprocess.DEVNULL)


def _as_postgres_user() -> dict[str, Any]:
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def start_postgres(max_connections: int = 300, committed_survives_a_crash: bool = False) -> PostgresCluster:
    """initdb a cluster in a temp dir (trust auth, user `dockyard`) and start it on 127.0.0.1.
    `committed_survives_a_crash`: a commit waits for its WAL write (synchronous_commit on), so a
    committed transaction outlives an immediate stop, as on a production server; otherwise the last
    ~200 ms of commits may be lost with the process (the OS still holds what was written: no fsync)."""
    initdb, postgres = postgres_tool("initdb"), postgres_tool("postgres")
    synchronous_commit = "on" if committed_survives_a_crash else "off"
    root = Path(tempfile.mkdtemp(prefix="dockyard-pg-", dir=_cluster_parent()))
    as_user = _as_postgres_user()
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    subprocess.run(
        [initdb, "-D", str(data), "-U", "dockyard", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True,
        capture_output=True,
        **as_user,
    )
    port = free_port()
    with (root / "postgres.log").open("wb") as log:
        process = subprocess.Popen(
            [
                postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root),
                # A throwaway cluster: durability buys nothing, speed does.
                "-c", "fsync=off", "-c", f"synchronous_commit={synchronous_commit}",
                "-c", "full_page_writes=off",
                "-c", f"max_connections={max_connections}",
                # Its WAL is memory on a tmpfs: checkpoints (cheap there) keep it small.
                "-c", "max_wal_size=128MB", "-c", "min_wal_size=32MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user,
        )
    cluster = PostgresCluster(f"postgresql+psycopg://dockyard@127.0.0.1:{port}", root, process)
    try:
        _wait_until_ready(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def throwaway_postgres(max_connections: int = 300) -> Iterator[PostgresCluster]:
    cluster = start_postgres(max_connections)
    try:
        yield cluster
    finally:
        cluster.stop()


def _wait_until_ready(cluster: PostgresCluster) -> None:
    engine = create_engine(cluster.database_url("postgres"))
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while True:
            if cluster.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {cluster.process.returncode}:\n{cluster.log()}")
            try:
                with engine.connect():
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


def scratch_database_url(directory: Path, filename: str = "dockyard.db") -> str:
    """The database a unit test should build its engine on: a SQLite file in `directory`, or -- when
    the PostgreSQL pass runs (DOCKYARD_TEST_DB=postgresql: tests/conftest.py sets
    DOCKYARD_TEST_POSTGRES_URL to its throwaway cluster) -- a fresh empty database of its own there.
    So a test written once runs on both."""
    server = os.environ.get("DOCKYARD_TEST_POSTGRES_URL")
    if not server:
        return f"sqlite:///{directory / filename}"
    return _scratch_postgres_url(server, migrated=False)


def migrated_scratch_database(directory: Path, filename: str = "dockyard.db") -> Database:
    """A Database on `scratch_database_url`, upgraded to every migration head: a copy of a migrated
    template on either database (tests/support/sqlite_template.py for SQLite), no migrations per test."""
    server = os.environ.get("DOCKYARD_TEST_POSTGRES_URL")
    if server:
        url = _scratch_postgres_url(server, migrated=True)
    else:
        copy_migrated_sqlite(directory / filename)
        url = scratch_database_url(directory, filename)
    engine = build_engine(url)
    upgrade(engine)  # finds the copy at head (a database already in `directory` is migrated)
    return Database(engine)


def _scratch_postgres_url(server: str, migrated: bool) -> str:
    name = f"dockyard_test_{uuid.uuid4().hex[:12]}"
    _create_database(server, name, migrated)
    return make_url(server).set(database=name).render_as_string(hide_password=False)


_templates: set[str] = set()
TEMPLATE = "dockyard_template"
# pg_advisory_lock's key for making the template: the test processes sharing a cluster make it once.
_TEMPLATE_LOCK = 0x646F636B


def migrated_template(server: str) -> str:
    """A database on that server upgraded to every migration head, made once per cluster (by whichever
    test process first needs it, the others wait for it: an advisory lock). New test databases are copies
    of it (CREATE DATABASE ... TEMPLATE copies files: about half the time of running the migrations into
    each, which the PostgreSQL pass would otherwise do hundreds of times). It is migrated under another
    name and renamed when done, so a process that died half-way leaves no half-migrated template."""
    if server in _templates:
        return TEMPLATE
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_TEMPLATE_LOCK})")
            try:
                found = connection.exec_driver_sql(
                    f"SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE}'"
                ).scalar()
                if not found:
                    _make_template(server, connection)
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_TEMPLATE_LOCK})")
    finally:
        admin.dispose()
    _templates.add(server)
    return TEMPLATE


def _make_template(server: str, connection: Any) -> None:
    building = f"{TEMPLATE}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    connection.exec_driver_sql(f'CREATE DATABASE "{building}"')
    engine = build_engine(make_url(server).set(database=building).render_as_string(hide_password=False))
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # a template must have no connections while it is renamed and copied
    connection.exec_driver_sql(f'ALTER DATABASE "{building}" RENAME TO "{TEMPLATE}"')


# The databases this process made (server URL, name), for drop_unused_databases.
_made: list[tuple[str, str]] = []


def _create_database(server: str, name: str, migrated: bool) -> None:
    # FILE_COPY: the template's files copied as they are, not written through the WAL (less CPU, and a
    # WAL that stays small).
    template = f' TEMPLATE "{migrated_template(server)}" STRATEGY FILE_COPY' if migrated else ""
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"{template}')
    finally:
        admin.dispose()
    _made.append((server, name))


def databases_made() -> int:
    """A mark for drop_unused_databases: how many databases this process has made so far."""
    return len(_made)


def drop_unused_databases(since: int) -> None:
    """Drop the databases made after the mark `since` that nothing is connected to any more; those in use
    (a session's server still runs on one, or this process's pool holds a connection) are left, as are
    those of clusters already stopped. Each is tried once. tests/conftest.py calls it when a test module
    ends, after its module-scoped fixtures."""
    made, _made[since:] = _made[since:], []
    by_server: dict[str, list[str]] = {}
    for server, name in made:
        by_server.setdefault(server, []).append(name)
    for server, names in by_server.items():
        admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
        try:
            with admin.connect() as connection:
                # A DROP of a database someone is connected to waits up to 5 s for them to leave before
                # PostgreSQL refuses it (a module whose last test's teardown took 25 s): those are not
                # asked. Without FORCE all the same, for one that gained a connection since.
                in_use = {
                    row[0]
                    for row in connection.exec_driver_sql(
                        "SELECT DISTINCT datname FROM pg_stat_activity WHERE datname IS NOT NULL"
                    )
                }
                for name in names:
                    if name in in_use:
                        continue
                    with contextlib.suppress(DBAPIError):
                        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        except DBAPIError:
            pass  # the cluster has stopped (a module's own): its databases went with it
        finally:
            admin.dispose()
