"""The errors of single sign-on and what a finished login reports."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.accounts.directory import ExternalIdentity
from dockyard.errors import Category, DockyardError


class OIDCUnavailable(DockyardError):
    """The provider could not be reached, or answered with a server error or nonsense."""

    category = Category.UNAVAILABLE
    message = "the OpenID provider is unavailable"
    public_message = message  # its detail names the provider's URLs and connection errors


class OIDCLoginFailed(DockyardError):
    """This login cannot finish: an unknown, used or expired `state`, another browser's, a code the
    provider refused, an ID token that fails a check. The message says which, in dockyard's words
    (never the provider's text)."""

    category = Category.UNAUTHENTICATED
    message = "the single sign-on login failed"


class OIDCAccountRefused(DockyardError):
    """The provider vouched for the user, but dockyard will not let them in: no account and
    onboarding off, a local or LDAP account of that name, another subject bound to the name, a name
    dockyard cannot use."""

    category = Category.DENIED
    message = "this single sign-on user may not log in here"


@dataclass(frozen=True, slots=True)
class FinishedLogin:
    identity: ExternalIdentity  # with the provider's `sub` in `subject`
    next_path: str  # where the browser asked to go after logging in (a local path, checked at start)
