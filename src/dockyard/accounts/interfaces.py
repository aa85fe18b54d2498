"""Users, groups, personal access tokens and robot accounts: the values and errors of `accounts`.

Services take and return these frozen values, never ORM rows, so callers cannot write to the DB behind
a service's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from dockyard.errors import Category, DockyardError

T = TypeVar("T")


# --- errors ---------------------------------------------------------------------------------
class InvalidName(DockyardError):
    category = Category.INVALID
    message = "invalid name"


class WeakPassword(DockyardError):
    category = Category.INVALID
    message = "the password does not meet the password policy"


class WrongPassword(DockyardError):
    """The current password given to change a password is not the user's password."""

    category = Category.DENIED
    message = "the current password is wrong"


class UserNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "user not found"


class UserExists(DockyardError):
    category = Category.CONFLICT
    message = "a user with this name already exists"


class LastAdmin(DockyardError):
    """Deleting, disabling or demoting the last enabled system administrator would lock everyone out."""

    category = Category.CONFLICT
    message = "cannot remove the last enabled system administrator"


class GroupNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "group not found"


class GroupExists(DockyardError):
    category = Category.CONFLICT
    message = "a group with this name already exists"


class PersonalTokenNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "personal access token not found"


class RobotNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "robot account not found"


class RobotExists(DockyardError):
    category = Category.CONFLICT
    message = "a robot account with this name already exists"


class NoCLISecret(DockyardError):
    """Only OpenID Connect users have a CLI secret (others have a password and personal tokens)."""

    category = Category.CONFLICT
    message = "only single sign-on (OIDC) users have a CLI secret"


class InvalidExpiry(DockyardError):
    category = Category.INVALID
    message = "the expiry must be in the future"


# --- values ---------------------------------------------------------------------------------
class UserSource(StrEnum):
    LOCAL = "local"  # password hash kept here
    LDAP = "ldap"  # password checked by the directory; row created on first login
    OIDC = "oidc"  # logs in at an OpenID provider (the portal); a CLI secret for clients


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str | None
    display_name: str | None
    source: UserSource
    admin: bool  # system administrator granted in dockyard
    directory_admin: bool  # member of a directory admin group at the last login
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.admin or self.directory_admin


@dataclass(frozen=True, slots=True)
class Group:
    id: int
    name: str
    source: UserSource  # "ldap" and "oidc" groups are kept in step with the provider at each login


@dataclass(frozen=True, slots=True)
class PersonalToken:
    id: int
    user_id: int
    name: str
    hint: str  # the first characters of the secret, to tell tokens apart in a list
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewPersonalToken:
    token: PersonalToken
    secret: str  # shown once; only its hash is stored


class RobotLevel(StrEnum):
    SYSTEM = "system"  # robot$<name>: permissions on any number of projects
    PROJECT = "project"  # robot$<project>+<name>: permissions on its own project only


@dataclass(frozen=True, slots=True)
class Robot:
    id: int
    name: str  # the full name a client logs in with: robot$ci or robot$team+ci
    project: str | None  # the project of a project-level robot
    description: str | None
    expires_at: datetime | None
    disabled: bool
    created_at: datetime

    @property
    def level(self) -> RobotLevel:
        return RobotLevel.SYSTEM if self.project is None else RobotLevel.PROJECT

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class NewRobot:
    robot: Robot
    secret: str  # shown once; only its hash is stored


@dataclass(frozen=True, slots=True)
class CredentialState:
    """Whether the credential a login used is still good, so what the login handed out (refresh
    tokens, bearer tokens, sessions) dies with it: a changed or reset password, a refreshed robot
    secret, a revoked or expired personal token, a disabled or deleted account."""

    live: bool
    expires_at: datetime | None = None  # when it stops by itself (a token's or robot's expiry)


DEAD_CREDENTIAL = CredentialState(False)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int  # rows matching the filter, ignoring offset and limit


# --- login rate limiting --------------------------------------------------------------------
class LoginStanding(StrEnum):
    """What the failure counts allow for one login attempt (the account named, from one address)."""

    OPEN = "open"
    # This address has failed too often for this account (or has failed for it while the account is
    # under attack from many addresses): its passwords are refused unchecked. Robot secrets and
    # personal access tokens (long, random) are still checked: guessing them is hopeless, and
    # refusing them would let anyone lock a CI job out.
    ACCOUNT_GUARDED = "account-guarded"
    # This address has failed too often, whatever the accounts: everything it sends is refused.
    ADDRESS_BLOCKED = "address-blocked"


class LoginLimiter(Protocol):
    """Counts failed logins within a window: per client address, per address and account, per account.

    Limits slow the guesser, never the owner: the per-account count only ever refuses addresses that
    have failed for the account themselves, so a correct password from an address that is not failing
    is always checked. `InProcessLoginLimiter` per process; `RedisLoginLimiter`
    (accounts/limiter_redis.py) shares counts between workers and nodes when redis.url is set.
    Usernames count case-insensitively; a missing client address counts as one address.
    """

    def standing(self, username: str, client_ip: str | None) -> LoginStanding:
        """What may be checked for `username` from `client_ip` now."""
        ...

    def failed(self, username: str | None, client_ip: str | None) -> None:
        """Count one failed attempt against the address, and against the account unless `username`
        is None (a robot: its secret cannot be guessed, so only the address is slowed)."""
        ...

    def succeeded(self, username: str, client_ip: str | None) -> None:
        """A correct login: forget this address's failures for this account (the address's own count
        and the account's count stay: a sprayer who knows one password gains nothing)."""
        ...
