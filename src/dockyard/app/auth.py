"""How an HTTP worker authenticates and authorizes: the auth mode's gate (registry:2's htpasswd or
token modes, dockyard's own, or none) and, for dockyard's own, /token and the management API with
the services behind them (`app.own_auth`).

Each mode's modules load where that mode is configured: a registry without auth (as the test suite's
servers run) never loads the accounts, PyJWT, cryptography or argon2. `dockyard serve` preloads the
configured mode's before the fork (`AUTH_MODULES`, app.preload), so its workers start with them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from dockyard.accounts.passwords import PASSWORD_MODULES
from dockyard.auth.remembered import DEFAULT_TTL, RememberedLogins
from dockyard.auth.tokens import TOKEN_MODULES
from dockyard.bootstrap import auth_mode
from dockyard.services import Services

if TYPE_CHECKING:
    from dockyard.api.management.sessions import SessionCodec
    from dockyard.api.manifest_effects import ManifestEffects
    from dockyard.api.oci.gate import Gate
    from dockyard.auth.interfaces import Principal
    from dockyard.auth.policy import AccessPolicy

REMEMBERED_LOGINS = 10_000  # Basic logins each worker remembers (auth.remembered) at most
# What each auth mode loads on its way (build_auth): serve's main process imports them for its workers.
AUTH_MODULES = {
    "htpasswd": ("dockyard.auth.htpasswd",),
    "token": ("dockyard.auth.external",),
    "dockyard": ("dockyard.app.own_auth", *TOKEN_MODULES, *PASSWORD_MODULES),
    "none": (),
}


# --- authentication and authorization -------------------------------------------------------------
@dataclass
class Auth:
    """How this worker authenticates and authorizes requests."""

    gate: Gate | None  # None: the registry is open
    routes: list[BaseRoute] = field(default_factory=list)  # /token and /api/v1
    policy: AccessPolicy | None = None  # dockyard's own auth: who may do what
    logins: RememberedLogins | None = None  # Basic logins, remembered once for /v2, /api/v1 and /metrics
    # The management API as mounted (built on its first request) and its session cookies' codec: what
    # the web portal (dockyard.ui) calls in-process. None where dockyard's own auth is off.
    management: ASGIApp | None = None
    sessions: SessionCodec | None = None

    def visible_projects(self, principal: Principal) -> frozenset[str] | None:
        if self.policy is None:
            return None
        visibility = self.policy.visible_projects(principal)
        return None if visibility.all else visibility.projects


def build_auth(services: Services, effects: ManifestEffects | None = None) -> Auth:
    """The auth mode's gate (registry:2's htpasswd or token modes, dockyard's own, or none) and, for
    dockyard's own, its /token and /api/v1."""
    auth = services.settings.auth
    mode = auth_mode(services.settings)
    if mode == "htpasswd":
        from dockyard.api.oci.gate import BasicGate
        from dockyard.auth.htpasswd import HtpasswdAuthenticator

        assert auth.htpasswd is not None
        authenticator = HtpasswdAuthenticator(auth.htpasswd.path)
        logins = RememberedLogins(authenticator, DEFAULT_TTL, REMEMBERED_LOGINS, time.time)
        return Auth(BasicGate(logins, auth.htpasswd.realm), logins=logins)
    if mode == "token":
        from dockyard.api.oci.gate import Challenge, TokenGate
        from dockyard.auth.external import ExternalTokenVerifier

        assert auth.token.rootcertbundle is not None
        verifier = ExternalTokenVerifier.from_bundle(
            auth.token.rootcertbundle, issuer=auth.token.issuer, service=auth.token.service
        )
        return Auth(TokenGate(verifier, Challenge(auth.token.service, auth.token.realm)))
    if mode == "none":
        return Auth(None)
    from dockyard.app.own_auth import dockyard_auth

    return dockyard_auth(services, effects)
