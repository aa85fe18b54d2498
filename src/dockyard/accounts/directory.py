"""The contract of an external user directory (LDAP/Active Directory) and what it reports.

It lives in `accounts` (below `auth`) because the local authenticator that consults the directory is
here; `dockyard.auth.interfaces` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dockyard.errors import Category, DockyardError


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """What a directory (LDAP/AD) or an OpenID provider says about a user who just proved who they are."""

    username: str
    email: str | None
    display_name: str | None
    groups: frozenset[str]  # group DNs or names, as the directory config maps them
    is_admin: bool = False
    subject: str | None = None  # an OpenID provider's `sub`: the account stays bound to it


class DirectoryProvider(Protocol):
    """An external user directory (LDAP/Active Directory): search-then-bind."""

    def verify(self, username: str, password: str) -> ExternalIdentity | None:
        """The identity when the password is right; None when the user is unknown or the
        password wrong. Raises DirectoryUnavailable when the directory cannot be reached."""
        ...


class DirectoryUnavailable(DockyardError):
    category = Category.UNAVAILABLE
    message = "the user directory is unavailable"
    public_message = message  # its detail is the connection's error
