"""Does a bearer token's principal still stand? A token's scopes were granted when it was issued and it
lives minutes (`auth.token.expiration`): the /v2 gate asks here on each request whether the account
is still there and enabled, the credential it logged in with still good (not changed, refreshed,
revoked or expired), and the scopes the request needs still allowed (a membership removed, a robot's
permission dropped, a project made private), so access ends when they do, not when the token expires.

The answer is remembered per process, per principal, credential and scopes, for `ttl` seconds (and
never past the credential's own expiry), and forgotten as soon as the change feed's AUTH topic moves:
every account, credential, membership and project change goes through the management API, which
announces it. A remembered answer costs a dict lookup; a new one, two indexed queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from enum import Enum
from typing import Protocol

from dockyard.accounts.interfaces import CredentialState
from dockyard.auth.interfaces import Principal, Scope
from dockyard.auth.remembered import DEFAULT_TTL
from dockyard.auth.scopes import AccessSet, decision_scopes
from dockyard.auth.tokens import AccessGranter, intersect
from dockyard.coordination.caches import GenerationCache, entries
from dockyard.coordination.interfaces import Generation


class Verdict(Enum):
    ALLOWED = "allowed"
    NOT_PERMITTED = "not permitted"  # the principal stands, but may no longer do this
    REVOKED = "revoked"  # the account or the credential is gone: the token is worth nothing


class CredentialStates(Protocol):
    """`dockyard.auth.local.LocalAuthenticator` fits."""

    def credential_state(self, principal: Principal) -> CredentialState:
        """Whether the credential the principal logged in with still stands (dead without one)."""
        ...


_LIVE = CredentialState(True)


class PrincipalStanding:
    def __init__(
        self,
        policy: AccessGranter,
        credentials: CredentialStates,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
        generation: Generation | None = None,
    ) -> None:
        self.policy = policy
        self.credentials = credentials
        self.ttl = ttl
        self.clock = clock
        self.answers = GenerationCache[Hashable, Verdict](generation, entries(max_entries), clock=clock)

    def remembered(self, principal: Principal, wanted: Sequence[Scope]) -> Verdict | None:
        """The remembered answer, without any I/O; None when there is none (call `check`)."""
        return self.answers.get(_key(principal, wanted))

    def check(self, principal: Principal, wanted: Sequence[Scope]) -> Verdict:
        """Asks the database (blocking: call it from a worker thread) and remembers the answer."""
        noted = self.answers.current_generation()
        state = self._credential(principal)
        if not state.live:
            verdict = Verdict.REVOKED
        elif not wanted:
            verdict = Verdict.ALLOWED
        else:
            granted = self.policy.grant(principal, wanted)
            permitted = AccessSet.of(intersect(wanted, granted)).permits_all(wanted)
            verdict = Verdict.ALLOWED if permitted else Verdict.NOT_PERMITTED
        until = self.clock() + self.ttl
        if state.expires_at is not None:
            until = min(until, state.expires_at.timestamp())
        self.answers.put(_key(principal, wanted), verdict, noted, until)
        return verdict

    def _credential(self, principal: Principal) -> CredentialState:
        if principal.is_anonymous:
            return _LIVE
        if principal.credential is None:
            # A token of an older version, naming no credential: it expires within minutes of the
            # upgrade; until then the policy still checks the account and its permissions.
            return _LIVE
        return self.credentials.credential_state(principal)


def _key(principal: Principal, wanted: Sequence[Scope]) -> Hashable:
    # A tuple of the values themselves: formatting them into a string cost 8 µs per request, this 1.
    # Repositories by their project: the answer is the same for all of a project's (decision_scopes).
    return (principal.kind, principal.id, principal.name, principal.credential, *decision_scopes(wanted))
