"""What a node does once at start, before its workers: make the data directory private, create the
first administrator and the shared secrets, re-encrypt token signing keys. Apart from
`dockyard.services` (which builds every service) so that `serve`'s start-up child loads only this, the
database and the accounts: not the registry, the storage drivers or the job kinds.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from pathlib import Path

from dockyard.config.settings import Settings
from dockyard.datadir import InsecureDataDirectory, private_umask, secure
from dockyard.db.engine import sqlite_file
from dockyard.db.session import Database
from dockyard.errors import ConfigError

log = logging.getLogger("dockyard.services")
SESSION_SECRET_FILE = "session-secret"
KEY_SECRET_FILE = "signing-key-secret"


def local_change_feed_path(settings: Settings) -> Path | None:
    """The file this node's processes share their change feed in; None when there is none (Redis
    carries the changes, or an in-memory store keeps everything in one process)."""
    if settings.redis.url or settings.storage.driver_name == "inmemory":
        return None
    return settings.datadir / "run" / "changes"


def secure_data(settings: Settings) -> None:
    """At start: files this process creates are private (umask 077), and the data directory (with a
    storage root or SQLite database kept elsewhere) is made private if an older version left it open.
    Exits with a message when it cannot be (another user's directory that others may read)."""
    private_umask()
    directories = []
    if settings.storage.driver_name == "filesystem":
        directories.append(settings.storage_root)
    files = []
    database = sqlite_file(settings.database_url)
    if database is not None:
        files = [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    try:
        changed = secure(settings.datadir, directories, files)
    except InsecureDataDirectory as exc:
        log.error("%s", exc)
        sys.exit(f"dockyard: {exc}")
    for change in changed:
        log.warning("made private (other users could read it): %s", change)


def auth_mode(settings: Settings) -> str:
    """ "htpasswd" or "token" (registry:2's modes), "dockyard" (its own accounts and tokens), "none"."""
    auth = settings.auth
    if auth.htpasswd is not None:
        return "htpasswd"
    if auth.token.rootcertbundle is not None:
        return "token"
    return "dockyard" if auth.enabled else "none"


def session_secret(settings: Settings) -> bytes:
    """Shared by every worker (and node): http.secret when long enough, else a file in the datadir."""
    if settings.http.secret and len(settings.http.secret.encode()) >= 32:
        return settings.http.secret.encode()
    return _datadir_secret(settings.datadir / SESSION_SECRET_FILE)


def signing_key_passphrases(settings: Settings) -> tuple[bytes, list[bytes | None]]:
    """What the token signing keys are encrypted under at rest, never a value in the database:
    http.secret (the same on every node), else a secret generated once in the datadir (0600). Then
    what stored keys may still be under: that datadir secret (from before http.secret was set), and
    nothing (keys older versions stored in the clear)."""
    path = settings.datadir / KEY_SECRET_FILE
    if settings.http.secret:
        older: list[bytes | None] = [path.read_text().strip().encode()] if path.is_file() else []
        return settings.http.secret.encode(), [*older, None]
    return _datadir_secret(path), [None]


def encrypt_signing_keys(settings: Settings, db: Database) -> int:
    """At start, before the workers: keys in the clear or under an older passphrase are re-encrypted
    under the current one. Returns how many were."""
    from dockyard.auth.keystore import encrypt_at_rest  # cryptography: only where keys are

    passphrase, older = signing_key_passphrases(settings)
    return encrypt_at_rest(db, passphrase, older)


def first_admin(settings: Settings, db: Database, env_password: str | None) -> str | None:
    """Create `admin` on the first start of dockyard's own auth; the generated password, if any."""
    if auth_mode(settings) != "dockyard":
        return None
    from dockyard.accounts.bootstrap import bootstrap_admin  # the accounts: only with their own auth
    from dockyard.accounts.users import UserService

    return bootstrap_admin(UserService(db), settings.datadir, env_password)


def _datadir_secret(path: Path) -> bytes:
    """The random secret in `path` (made once, mode 0600, by whichever process comes first)."""
    _create_once(path, secrets.token_hex(32))
    for _ in range(50):  # a process that lost the creation race may read before the winner wrote
        value = path.read_text().strip()
        if value:
            return value.encode()
        time.sleep(0.01)
    raise ConfigError(f"{path} is empty: delete it and restart")


def _create_once(path: Path, text: str) -> None:
    """Write path (mode 0600) unless it exists; of several racing processes exactly one writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as file:
        file.write(text)
