"""registry:2's `auth.htpasswd`: users and bcrypt hashes in an htpasswd file (`htpasswd -B`).

As in registry:2: only bcrypt entries count, lines starting with '#' are comments, and the file is
read again when it changes, so users can be added without a restart. Every valid user may do
everything: this mode has no roles.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import bcrypt

from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind

log = logging.getLogger("dockyard.auth.htpasswd")

_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
# bcrypt reads at most 72 bytes; a longer password is refused rather than silently truncated.
MAX_SECRET_BYTES = 72


@dataclass(frozen=True, slots=True)
class _FileState:
    inode: int
    size: int
    mtime_ns: int


@cache
def _dummy_hash() -> bytes:
    """Checked against when the user is unknown, so a wrong name costs as long as a wrong password."""
    return bcrypt.hashpw(b"dockyard-dummy-password", bcrypt.gensalt(rounds=10))


def parse_htpasswd(text: str) -> dict[str, bytes]:
    """username -> bcrypt hash. Entries with other hash kinds are skipped (and logged)."""
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        username, sep, digest = line.partition(":")
        if not sep or not username:
            log.warning("htpasswd line %d is not `user:hash`: skipped", number)
            continue
        encoded = digest.encode()
        if not encoded.startswith(_BCRYPT_PREFIXES):
            log.warning("htpasswd user %r has a non-bcrypt hash (use `htpasswd -B`): skipped", username)
            continue
        entries[username] = encoded
    return entries


class HtpasswdAuthenticator:
    """An Authenticator backed by an htpasswd file, re-read when its inode, size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._state: _FileState | None = None
        self._entries: dict[str, bytes] = {}

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        entries = self._current_entries()
        hashed = entries.get(username)
        password = secret.encode()
        if len(password) > MAX_SECRET_BYTES:
            raise AuthenticationFailed()
        try:
            matched = bcrypt.checkpw(password, hashed or _dummy_hash())
        except ValueError:  # a malformed hash in the file
            log.warning("htpasswd hash of user %r is malformed", username)
            matched = False
        if hashed is None or not matched:
            log.info("htpasswd login failed for %r from %s", username[:64], client_ip or "?")
            raise AuthenticationFailed()
        return Principal(PrincipalKind.USER, username)

    def _current_entries(self) -> dict[str, bytes]:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            log.error("htpasswd file %s cannot be read: %s", self.path, exc.strerror or exc)
            return {}
        state = _FileState(stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if state != self._state:
                try:
                    self._entries = parse_htpasswd(self.path.read_text(errors="replace"))
                except OSError as exc:
                    log.error("htpasswd file %s cannot be read: %s", self.path, exc.strerror or exc)
                    return {}
                self._state = state
                log.info("loaded %d users from %s", len(self._entries), self.path)
            return self._entries
