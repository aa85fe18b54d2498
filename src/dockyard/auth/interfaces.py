"""Who is asking and what they may do: the values every auth piece exchanges.

The flow: an `Authenticator` turns credentials into a `Principal`; the `AccessPolicy` turns a
principal and the `Scope`s it asks for into the scopes it is granted (the intersection of what was
asked and what the role table allows); the `TokenService` signs granted scopes into a JWT and
verifies them again on /v2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from dockyard.accounts.credentials import Credential, CredentialKind
from dockyard.accounts.directory import DirectoryProvider, DirectoryUnavailable, ExternalIdentity
from dockyard.errors import Category, DockyardError

__all__ = [
    "ANONYMOUS",
    "AccessDenied",
    "AuthenticationFailed",
    "Authenticator",
    "Credential",  # defined in accounts.credentials (below auth), re-exported here
    "CredentialKind",
    "DirectoryProvider",  # defined in accounts.directory (below auth), re-exported here
    "DirectoryUnavailable",
    "ExternalIdentity",
    "Principal",
    "PrincipalKind",
    "Scope",
    "Unauthenticated",
]


class PrincipalKind(StrEnum):
    ANONYMOUS = "anonymous"
    USER = "user"
    ROBOT = "robot"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    name: str  # "" for anonymous; "robot$team+ci" for robots
    id: int | None = None
    is_admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)  # LDAP/local group names
    # The credential the principal logged in with; what the login hands out dies with it. None for
    # anonymous, htpasswd and external tokens. Not part of the identity: equality ignores it.
    credential: Credential | None = field(default=None, compare=False)

    @property
    def is_anonymous(self) -> bool:
        return self.kind is PrincipalKind.ANONYMOUS


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS, "")


@dataclass(frozen=True, slots=True)
class Scope:
    """One access request or grant, as in the token spec: `repository:team/app:pull,push`,
    `repository(plugin):team/app:pull`, `registry:catalog:*`."""

    type: str  # "repository" | "registry"
    name: str  # repository name, or "catalog"
    actions: frozenset[str]
    resource_class: str | None = None  # the "(plugin)" part, kept so the grant echoes it

    def to_claim(self) -> dict[str, object]:
        """The JWT `access` entry for this scope."""
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


class AuthenticationFailed(DockyardError):
    """Credentials were given and are wrong (or the account is disabled or expired)."""

    category = Category.UNAUTHENTICATED
    message = "authentication required"


class AccessDenied(DockyardError):
    """Authenticated, but not allowed."""

    category = Category.DENIED
    message = "requested access to the resource is denied"


class Unauthenticated(DockyardError):
    """No usable credentials where some are needed: answered with a challenge."""

    category = Category.UNAUTHENTICATED
    message = "authentication required"


class Authenticator(Protocol):
    """Checks a username and secret (password, personal token, robot secret)."""

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        """The principal, or AuthenticationFailed. Never says which part was wrong."""
        ...
