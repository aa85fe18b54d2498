"""The first administrator: created on the first start, when there are no users at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from dockyard.accounts.interfaces import UserExists, WeakPassword
from dockyard.accounts.passwords import check_password_policy
from dockyard.accounts.users import UserService

ADMIN_USERNAME = "admin"
PASSWORD_FILE = "admin-password"
ENV_VARIABLE = "DOCKYARD_ADMIN_PASSWORD"


def bootstrap_admin(users: UserService, datadir: Path, env_password: str | None) -> str | None:
    """Create `admin` (a system administrator) if the DB has no users; else do nothing.

    The password is `env_password` (DOCKYARD_ADMIN_PASSWORD) when given, and then None is returned.
    Otherwise it is random, written to `<datadir>/admin-password` (mode 0600) and returned so the caller
    can show it once. The caller must never log it. Safe to call at every start and from several
    processes at once: only the one that creates the user writes the file.
    """
    if users.count() > 0:
        return None
    if env_password:
        try:
            check_password_policy(env_password, ADMIN_USERNAME)
        except WeakPassword as error:
            raise WeakPassword(f"{ENV_VARIABLE}: {error.message}") from None
        with contextlib.suppress(UserExists):
            users.create(ADMIN_USERNAME, env_password, admin=True, display_name="Administrator")
        return None
    password = secrets.token_urlsafe(18)
    datadir.mkdir(parents=True, exist_ok=True)
    final = datadir / PASSWORD_FILE
    # Written next to its final name first: a crash between the two steps never leaves an admin whose
    # password is nowhere, nor a file with a password nobody has.
    pending = datadir / f".{PASSWORD_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    _write_private(pending, password + "\n")
    try:
        users.create(ADMIN_USERNAME, password, admin=True, display_name="Administrator")
    except UserExists:
        pending.unlink(missing_ok=True)
        return None
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, final)
    return password


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
