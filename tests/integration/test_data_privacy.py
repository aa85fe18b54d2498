"""The data directory is nobody else's: created 0700 with files 0600 whatever the umask (the database
with its password hashes, blobs, uploads, run files, secrets), an older one made private at start, and the
token signing keys encrypted at rest under a key that is not in the database.

Before: with the default umask everything was world-readable, the keys in the clear: any local user
could read the signing key out of the database and forge an admin token.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from sqlalchemy import select

from dockyard.auth.keystore import open_key
from dockyard.auth.models import SigningKey
from dockyard.auth.tokens import KeyRing
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database
from tests.support import server as server_support
from tests.support.ociclient import OCIClient, bearer_client
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "privacy-admin-password-1")
AUTH_ON: dict[str, Any] = {"auth": {"enabled": True}}
ENV = {"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
SECRET = "an-http-secret-the-same-on-every-node-0123456789"


@pytest.fixture(autouse=True)
def default_umask() -> Iterator[None]:
    """Servers start with the umask most systems give users: 022 (files 0644, directories 0755)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A work directory other users may enter (pytest's own is root's only), so that what decides if
    they can read a file is the data directory's mode."""
    path = Path(tempfile.mkdtemp(prefix="dockyard-privacy-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def server_database(config_path: Path, datadir: Path) -> Iterator[Database]:
    url = yaml.safe_load(config_path.read_text()).get("database", {}).get("url")
    db = Database(build_engine(url or f"sqlite:///{datadir / 'dockyard.db'}"))
    try:
        yield db
    finally:
        db.dispose()


def stored_keys(server: RunningServer) -> dict[str, str]:
    with server_database(server.config_path, server.datadir) as db, db.read() as connection:
        return dict(connection.execute(select(SigningKey.kid, SigningKey.private_key)).all())


def token_kid(server: RunningServer) -> str:
    answer = httpx.get(
        f"{server.url}/token", params={"service": "dockyard"}, auth=ADMIN, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    kid: str = jwt.get_unverified_header(answer.json()["token"])["kid"]
    return kid


def open_entries(root: Path) -> list[str]:
    return [
        f"{oct(stat.S_IMODE(path.lstat().st_mode))} {path}"
        for path in [root, *root.rglob("*")]
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    ]


def readable_by_nobody(path: Path) -> bool:
    return subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(path)]).returncode == 0


def test_everything_in_a_new_data_directory_is_private(tmp_path: Path) -> None:
    config = {**AUTH_ON, "http": {"workers": 2}, "jobs": {"run_in_serve": True}}
    server = start_server(tmp_path / "server", config)  # a generated admin password, kept in a file
    try:
        admin = ("admin", (server.datadir / "admin-password").read_text().strip())
        with bearer_client(server.url, admin, ("team/app",)) as http:
            oci = OCIClient(http)
            oci.push_image("team/app", "v1")
            oci.patch_chunk(oci.upload_location("team/app"), b"an upload in progress")
        time.sleep(1.5)  # the workers' metrics files are written by their flush thread
        datadir = server.datadir
        assert open_entries(datadir) == []
        names = {path.name for path in datadir.rglob("*")}
        assert {"admin-password", "session-secret", "signing-key-secret", "blobs", "uploads", "run"} <= names
        assert not readable_by_nobody(datadir / "admin-password")
        if (datadir / "dockyard.db").exists():  # SQLite
            assert not readable_by_nobody(datadir / "dockyard.db")
        # The signing key is encrypted, under the datadir's secret, not a value in the database.
        keys = stored_keys(server)
        assert keys and all(pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----") for pem in keys.values())
        secret = (datadir / "signing-key-secret").read_text().strip().encode()
        assert all(open_key(pem, [secret]) is not None for pem in keys.values())
        assert all(open_key(pem, [None]) is None for pem in keys.values())
    finally:
        server.stop()
    assert open_entries(server.datadir) == []


def test_an_older_installation_is_made_private_and_its_keys_encrypted_at_start(tmp_path: Path) -> None:
    """What an older version left: a world-readable datadir, its database 0644, a key in the clear."""
    workdir = tmp_path / "server"
    datadir = workdir / "data"
    datadir.mkdir(parents=True)
    datadir.chmod(0o755)
    factory = server_support.database_url_factory
    url = factory(str(datadir)) if factory else f"sqlite:///{datadir / 'dockyard.db'}"
    engine = build_engine(url)
    upgrade(engine)
    db = Database(engine)
    kid = KeyRing(db).rotate()
    db.dispose()
    if factory is None:
        (datadir / "dockyard.db").chmod(0o644)
        assert readable_by_nobody(datadir / "dockyard.db")

    server = start_server(workdir, AUTH_ON, env=ENV)
    try:
        assert open_entries(datadir) == [], "older files, now unreachable, are not walked: none were there"
        if factory is None:
            assert not readable_by_nobody(datadir / "dockyard.db")
        assert f"{datadir}: 0755 -> 0700" in server.log()
        assert stored_keys(server)[kid].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert token_kid(server) == kid  # the same key signs: tokens it signed before go on working
    finally:
        server.stop()

    # http.secret set later: the key moves under it (a copy of the datadir's secret no longer opens it).
    server = start_server(workdir, {**AUTH_ON, "http": {"secret": SECRET}}, env=ENV)
    try:
        pem = stored_keys(server)[kid]
        assert open_key(pem, [SECRET.encode()]) is not None
        assert open_key(pem, [(datadir / "signing-key-secret").read_text().strip().encode(), None]) is None
        assert token_kid(server) == kid
    finally:
        server.stop()
