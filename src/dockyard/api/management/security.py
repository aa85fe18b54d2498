"""Who is calling: HTTP Basic (password, personal access token or robot secret, all through the
Authenticator) or the session cookie from POST /login; anonymous otherwise.

Session-authenticated requests with an unsafe method must echo the session's CSRF token in the
`X-CSRF-Token` header: the cookie is SameSite=Strict already, the header is the second lock (older
browsers, same-site subdomains). Basic-authenticated requests need no CSRF token: they are made by
programs, not by a page a browser was lured to.

Basic logins are remembered exactly as on /v2 (`auth.remembered`, the same instance as the gate's when
wired by `dockyard.app`): a success for its `ttl` seconds, forgotten at once when the AUTH change feed
moves; failures never, and each one counts against the login limits.

Sessions are checked in the database (the session's row, the account, the credential it was opened
with: four indexed queries) and the answer remembered by the worker the same way
(`ManagementServices.remembered_sessions`): for SESSION_TTL seconds at most, never past the session's
or the credential's expiry, forgotten when the AUTH topic moves. Every write through the API that
changes who may do what announces on it (`api.auth_changes`), a logout included, so a session logged
out, or whose account or credential changed, is refused at once by every worker (other nodes: within
the feed's delay).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request

from dockyard.api.authorization import AuthorizationTooLarge, parse_authorization
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.sessions import COOKIE_NAME, CSRF_HEADER, Session
from dockyard.auth.interfaces import (
    ANONYMOUS,
    AuthenticationFailed,
    Principal,
    PrincipalKind,
    Unauthenticated,
)
from dockyard.auth.remembered import decode_basic

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


PRINCIPAL_STATE = "principal"  # request.state attribute: who the caller turned out to be
SESSION_KEY_STATE = "session_key"  # request.state attribute: the session a cookie named


async def current_principal(
    request: Request, services: Annotated[ManagementServices, Depends(services_of)]
) -> Principal:
    """The caller; ANONYMOUS when no credentials came. Wrong credentials are a 401, never anonymous."""
    principal = await _identify(request, services)
    setattr(request.state, PRINCIPAL_STATE, principal)
    return principal


async def _identify(request: Request, services: ManagementServices) -> Principal:
    header = request.headers.get("authorization")
    if header is not None:
        return await _from_basic(header, request, services)
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie is not None:
        return await _from_cookie(cookie, request, services)
    return ANONYMOUS


async def _from_basic(header: str, request: Request, services: ManagementServices) -> Principal:
    username, secret, encoded = _basic_credentials(header)
    if services.logins is None:
        return await anyio.to_thread.run_sync(
            services.authenticator.authenticate, username, secret, client_ip(request)
        )
    # The /v2 gate's remembered logins: scripts send the password with every call, and argon2id
    # costs ~25 ms of CPU and 7 MiB each time. Revocations reach it through the AUTH change feed.
    principal = await services.logins.principal(encoded, client_ip(request))
    if principal is None:
        raise AuthenticationFailed()
    return principal


SESSION_TTL = 30.0  # seconds a worker remembers an open session; revocations come by the change feed


def _expired() -> Unauthenticated:
    # A stale cookie is told so, so the UI sends the user to log in again.
    return Unauthenticated("the session has expired; log in again")


async def _from_cookie(cookie: str, request: Request, services: ManagementServices) -> Principal:
    session = services.sessions.read(cookie)  # the signature and expiry: no I/O
    if session is None or session.kind != PrincipalKind.USER.value:
        raise _expired()
    remembered = services.remembered_sessions
    key = hashlib.sha256(session.key.encode()).digest()  # the key is a secret: not kept as it is
    known = remembered.get(key) if remembered is not None else None
    if known is not None:
        principal = known
    else:
        noted = remembered.current_generation() if remembered is not None else None
        principal, until = await anyio.to_thread.run_sync(_from_session, session, services)
        if remembered is not None:
            remembered.put(key, principal, noted, until)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise ApiError(403, f"missing or wrong {CSRF_HEADER} header")
    setattr(request.state, SESSION_KEY_STATE, session.key)
    return principal


def _from_session(session: Session, services: ManagementServices) -> tuple[Principal, float]:
    """The session's principal as the database has it now, and until when it may be remembered."""
    stored = services.login_sessions.find(session.key)
    if stored is None or stored.user_id != session.account_id:
        raise _expired()  # logged out (this copy of the cookie or another), or the account was deleted
    try:
        # As the DB has the account and the credential now: disabled, deleted, demoted, a changed
        # password or a revoked personal token takes effect at once.
        principal, credential_expires = services.authenticator.reload_until(
            Principal(PrincipalKind.USER, session.name, session.account_id, credential=stored.credential)
        )
    except AuthenticationFailed:
        raise _expired() from None
    until = min(time.time() + SESSION_TTL, stored.expires_at.timestamp())
    if credential_expires is not None:
        until = min(until, credential_expires.timestamp())
    return principal, until


def session_key(request: Request) -> str | None:
    """The key of the session the request came in with; None for Basic credentials."""
    key: str | None = getattr(request.state, SESSION_KEY_STATE, None)
    return key


# The checks below are `async` only so that FastAPI calls them on the event loop: it runs a plain `def`
# dependency in a worker thread, a hand-off that costs far more than the check.
async def authenticated(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if principal.is_anonymous:
        raise Unauthenticated()
    return principal


async def admin(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "only system administrators may do this")
    return principal


def _basic_credentials(header: str) -> tuple[str, str, bytes]:
    """(username, secret, the base64 part the remembered logins are keyed by), decoded as /v2 and
    /token decode them (`decode_basic`): a header that is not base64 of UTF-8 `user:secret`, non-ASCII
    bytes included, is a 401."""
    try:
        authorization = parse_authorization(header)
    except AuthorizationTooLarge:
        authorization = None
    if authorization is None or not authorization.is_basic:
        raise AuthenticationFailed("use HTTP Basic credentials or log in")
    raw = authorization.credentials
    credentials = decode_basic(raw)
    if credentials is None:
        raise AuthenticationFailed("malformed Basic credentials")
    username, secret = credentials
    return username, secret, raw


# Shorthands for handler signatures.
Caller = Annotated[Principal, Depends(current_principal)]
SignedIn = Annotated[Principal, Depends(authenticated)]
Admin = Annotated[Principal, Depends(admin)]
