"""Management sessions while they are open: the server side of the cookie from POST /login.

The cookie is signed (so a forged one is refused without a query) and carries a random key; the row
under that key's SHA-256 says the session is open and which credential opened it. Logging out deletes
the row, so a copy of the cookie kept elsewhere is refused too; a use also checks the credential
(`auth.local.LocalAuthenticator.reload_until`), so a session dies with its password or personal token
(the API's workers remember a check until the change feed announces an account change or a logout).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update

from dockyard.accounts.credentials import Credential
from dockyard.accounts.models import LoginSessionRow
from dockyard.db.base import utcnow
from dockyard.db.session import Database

# Built once: each worker checks a session on its first request and after every account change.
_FIND = select(LoginSessionRow.user_id, LoginSessionRow.credential, LoginSessionRow.expires_at).where(
    LoginSessionRow.id == bindparam("id")
)


@dataclass(frozen=True, slots=True)
class LoginSession:
    user_id: int
    credential: Credential
    expires_at: datetime


class LoginSessionService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def open(self, key: str, user_id: int, credential: Credential, expires_at: datetime) -> None:
        """Record a session under `key` (a random secret the caller put in the cookie). Sessions that
        expired meanwhile, anyone's, are dropped here: logins are rare, an index finds them."""
        now = utcnow()
        with self._db.write() as connection:
            connection.execute(delete(LoginSessionRow).where(LoginSessionRow.expires_at <= now))
            connection.execute(
                insert(LoginSessionRow).values(
                    id=_id(key),
                    user_id=user_id,
                    credential=credential.to_claim(),
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def find(self, key: str) -> LoginSession | None:
        """The open session under `key`; None when it was closed, expired or never opened."""
        with self._db.read() as connection:
            row = connection.execute(_FIND, {"id": _id(key)}).first()
        if row is None or row.expires_at <= utcnow():
            return None
        credential = Credential.from_claim(row.credential)
        return LoginSession(row.user_id, credential, row.expires_at) if credential else None

    def close(self, key: str) -> None:
        with self._db.write() as connection:
            connection.execute(delete(LoginSessionRow).where(LoginSessionRow.id == _id(key)))

    def rebind(self, key: str, credential: Credential) -> None:
        """The session's user changed the password it was opened with, in this session: it goes on
        with the new one (every other session opened with the old password ends)."""
        with self._db.write() as connection:
            connection.execute(
                update(LoginSessionRow)
                .where(LoginSessionRow.id == _id(key))
                .values(credential=credential.to_claim())
            )


def _id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
