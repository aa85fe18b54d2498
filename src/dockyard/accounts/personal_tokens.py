"""Personal access tokens: secrets a user makes to log in from the CLI or CI instead of their password."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from dockyard.accounts.credentials import (
    PERSONAL_TOKEN_PREFIX,
    Credential,
    CredentialKind,
    fingerprint,
    hash_secret,
    hint_of,
    new_secret,
    same_fingerprint,
)
from dockyard.accounts.interfaces import (
    DEAD_CREDENTIAL,
    CredentialState,
    InvalidExpiry,
    InvalidName,
    NewPersonalToken,
    PersonalToken,
    PersonalTokenNotFound,
    User,
    UserNotFound,
)
from dockyard.accounts.models import PersonalTokenRow, UserRow, username_is
from dockyard.accounts.users import USER_COLUMNS, user_from_row
from dockyard.db.base import utcnow
from dockyard.db.session import Database, unless_full

_COLUMNS = (
    PersonalTokenRow.id,
    PersonalTokenRow.user_id,
    PersonalTokenRow.name,
    PersonalTokenRow.hint,
    PersonalTokenRow.created_at,
    PersonalTokenRow.expires_at,
    PersonalTokenRow.last_used_at,
)
# last_used_at is written at most this often, so a token used on every request does not write every time.
USE_STAMP_INTERVAL = timedelta(minutes=5)
MAX_TOKENS_PER_USER = 100


def _token(row: Any) -> PersonalToken:
    return PersonalToken(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        hint=row.hint,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


# Built once: a personal token's session or bearer token checks it on every miss.
_TOKEN_STATE = (
    select(UserRow.username, UserRow.disabled, PersonalTokenRow.secret_hash, PersonalTokenRow.expires_at)
    .join(UserRow, UserRow.id == PersonalTokenRow.user_id)
    .where(PersonalTokenRow.id == bindparam("token_id"), PersonalTokenRow.user_id == bindparam("user_id"))
)


class PersonalTokenService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, username: str, name: str, expires_at: datetime | None = None) -> NewPersonalToken:
        """A new token for the user; its secret is in the result and nowhere else."""
        if not name or len(name) > 255 or not name.isprintable():
            raise InvalidName("a token needs a printable name of 1-255 characters")
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise InvalidExpiry()
        secret = new_secret(PERSONAL_TOKEN_PREFIX)
        with self._db.write() as connection:
            user_id = connection.execute(select(UserRow.id).where(username_is(username))).scalar()
            if user_id is None:
                raise UserNotFound(detail={"username": username})
            count = connection.execute(
                select(func.count()).where(PersonalTokenRow.user_id == user_id)
            ).scalar_one()
            if count >= MAX_TOKENS_PER_USER:
                raise InvalidName(f"a user may have at most {MAX_TOKENS_PER_USER} tokens")
            token_id = connection.execute(
                insert(PersonalTokenRow)
                .values(
                    user_id=user_id,
                    name=name,
                    secret_hash=hash_secret(secret),
                    hint=hint_of(secret, PERSONAL_TOKEN_PREFIX),
                    created_at=now,
                    expires_at=expires_at,
                )
                .returning(PersonalTokenRow.id)
            ).scalar_one()
            row = connection.execute(select(*_COLUMNS).where(PersonalTokenRow.id == token_id)).one()
        return NewPersonalToken(_token(row), secret)

    def list(self, username: str) -> list[PersonalToken]:
        with self._db.read() as connection:
            rows = connection.execute(
                select(*_COLUMNS)
                .join(UserRow, UserRow.id == PersonalTokenRow.user_id)
                .where(username_is(username))
                .order_by(PersonalTokenRow.created_at, PersonalTokenRow.id)
            )
            return [_token(row) for row in rows]

    def revoke(self, username: str, token_id: int) -> None:
        """Delete one of the user's tokens (another user's token id is "not found")."""
        owner = select(UserRow.id).where(username_is(username)).scalar_subquery()
        with self._db.write() as connection:
            result = connection.execute(
                delete(PersonalTokenRow).where(
                    PersonalTokenRow.id == token_id, PersonalTokenRow.user_id == owner
                )
            )
        if result.rowcount == 0:
            raise PersonalTokenNotFound(detail={"id": token_id})

    def credential_state(self, user_id: int, username: str, credential: Credential) -> CredentialState:
        """Whether a login with this personal token still stands: dead when the token was revoked
        or expired, or its user is gone or disabled."""
        if credential.kind is not CredentialKind.PERSONAL_TOKEN or credential.token_id is None:
            return DEAD_CREDENTIAL
        with self._db.read() as connection:
            values = {"token_id": credential.token_id, "user_id": user_id}
            row = connection.execute(_TOKEN_STATE, values).first()
        if row is None or row.username != username or row.disabled:
            return DEAD_CREDENTIAL
        if row.expires_at is not None and row.expires_at <= utcnow():
            return DEAD_CREDENTIAL
        return CredentialState(same_fingerprint(credential.fingerprint, row.secret_hash), row.expires_at)

    def authenticate(self, username: str, secret: str) -> User | None:
        """The token's user when `secret` is a live token of `username` and the user is enabled."""
        login = self.login(username, secret)
        return login[0] if login is not None else None

    def login(self, username: str, secret: str) -> tuple[User, Credential] | None:
        """As authenticate, with the credential the token is (it ends when the token is revoked)."""
        if not secret.startswith(PERSONAL_TOKEN_PREFIX):
            return None
        secret_hash = hash_secret(secret)
        with self._db.read() as connection:
            row = connection.execute(
                select(
                    *USER_COLUMNS,
                    PersonalTokenRow.id.label("token_id"),
                    PersonalTokenRow.expires_at,
                    PersonalTokenRow.last_used_at.label("token_used_at"),
                )
                .join(UserRow, UserRow.id == PersonalTokenRow.user_id)
                .where(PersonalTokenRow.secret_hash == secret_hash)
            ).first()
        now = utcnow()
        # The token's user, named in any case (usernames are unique whatever their case).
        if row is None or not username.isascii() or row.username.lower() != username.lower() or row.disabled:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        if row.token_used_at is None or now - row.token_used_at >= USE_STAMP_INTERVAL:
            with unless_full("personal token use"), self._db.write() as connection:
                connection.execute(
                    update(PersonalTokenRow)
                    .where(PersonalTokenRow.id == row.token_id)
                    .values(last_used_at=now)
                )
        credential = Credential(CredentialKind.PERSONAL_TOKEN, fingerprint(secret_hash), row.token_id)
        return user_from_row(row), credential
