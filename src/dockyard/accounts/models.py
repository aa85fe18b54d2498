"""Tables of accounts: users, groups, group membership, personal access tokens, robot accounts,
management sessions."""

from datetime import datetime

from sqlalchemy import Boolean, ColumnElement, ForeignKey, Index, Integer, String, Text, false, func
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # None: directory user
    source: Mapped[str] = mapped_column(String(16), default="local")
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    directory_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # OIDC users: the issuer's `sub` the account is bound to (`<sha256 of iss>:<sub>` would not fit
    # every sub; the issuer is the configured one), and the hash of their CLI secret (sha256 hex).
    oidc_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cli_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


# Usernames are unique whatever their case: `Admin` cannot be created beside `admin`.
Index("uq_users_username_lower", func.lower(UserRow.username), unique=True)


def username_is(name: str) -> ColumnElement[bool]:
    """The user called `name` in any case (`ADMIN` finds `admin`), through the index above. Usernames
    are ASCII (accounts.names), where SQL's lower() and Python's agree; other input matches nobody."""
    if not name.isascii():
        return false()
    return func.lower(UserRow.username) == name.lower()


class GroupRow(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(512), unique=True)
    source: Mapped[str] = mapped_column(String(16), default="local")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserGroupRow(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PersonalTokenRow(Base):
    __tablename__ = "personal_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    hint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RobotRow(Base):
    __tablename__ = "robots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(600), unique=True)  # robot$<name> or robot$<project>+<name>
    project: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginSessionRow(Base):
    """A management-API session (the cookie from POST /login) while it is open: logging out deletes
    it, and the credential it was opened with is checked on each use."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's key
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential: Mapped[str] = mapped_column(String(128))  # Credential.to_claim()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class OIDCLoginStateRow(Base):
    """An OpenID Connect login under way: made when the browser is sent to the provider, deleted when
    it comes back (once: a replayed `state` finds nothing) or when it expires. The browser holds the
    binding's secret in a cookie, so a `state` is only good in the browser that started it."""

    __tablename__ = "oidc_login_states"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the state
    binding_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the browser's cookie
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_path: Mapped[str] = mapped_column(String(2048))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
