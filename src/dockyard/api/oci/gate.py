"""The /v2 gate: who is asking, and may they do what this route does?

The router calls `await gate.check(scope, route_key, args, method)` after matching a route and gets
either the `Principal` (go on) or a `Response` to send instead:

- 401 with a challenge (`WWW-Authenticate: Bearer realm=..,service=..,scope=..`, or `Basic realm=..`
  in htpasswd mode) when credentials are missing or invalid. A valid token that lacks the scope also
  gets a 401 challenge (`error="insufficient_scope"`), as registry:2 answers: clients such as
  containerd fetch a token for the new scope on exactly that answer.
- 403 DENIED when Basic credentials are right but the policy does not allow the request.

A cross-repository mount (`POST .../uploads/?mount=..&from=src`) asks for pull on `src` in its challenge,
but only push on the target is required: when the caller may not read `src`, the gate marks the request
(`MOUNT_REFUSED_KEY`) and the handler starts a plain upload (202, what the spec says a registry unable to
mount answers) instead of refusing the push. containerd before 2.1 aborts a push on a 401 to a mount
(containerd/containerd#12163), e.g. of an image pulled from a project the pusher cannot read. An automatic
mount (no `from`) takes the blob only from a project the caller may pull from, as the policy says for the
caller (its roles, groups, a robot's permissions), not as its token says: the gate leaves those projects
under `MOUNT_SOURCES_KEY`. With external tokens (no policy) it is not done (`MOUNT_REFUSED_KEY`): mounting
from anywhere would hand any pusher any blob whose digest they know.

It runs on every request, so a verified token is remembered (by its SHA-256, until it expires, at
most a minute): a repeated token costs a dict lookup instead of an ECDSA verification. Basic
credentials are remembered the same way (`auth.remembered`: argon2 and bcrypt are slow on purpose),
and so are the policy's answers to them, for as long. A bearer token's scopes were granted when it was
issued: with dockyard's own tokens each use also asks whether its principal still stands (account,
credential, permissions; `auth.standing`, remembered per principal and scopes, forgotten on the change
feed), so a disabled user, a deleted robot or a removed membership loses access before the token expires.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import parse_qs

import anyio.to_thread
from starlette.responses import Response
from starlette.types import Scope as ASGIScope

from dockyard.api.authorization import AuthorizationTooLarge, parse_authorization
from dockyard.api.oci.errors import error_response
from dockyard.auth.interfaces import Principal, Scope
from dockyard.auth.policy import Visibility
from dockyard.auth.remembered import RememberedLogins
from dockyard.auth.scopes import (
    CATALOG_SCOPE,
    DELETE,
    PULL,
    PUSH,
    AccessSet,
    decision_scopes,
    format_scopes,
    repository_scope,
)
from dockyard.auth.standing import PrincipalStanding, Verdict
from dockyard.auth.tokens import AccessGranter, TokenInvalid, VerifiedToken, intersect
from dockyard.content.reference import validate_name
from dockyard.coordination.caches import GenerationCache, entries
from dockyard.coordination.interfaces import Generation
from dockyard.errors import NameInvalid, OCICode

PRINCIPAL_KEY = "dockyard.principal"  # the scope key check() leaves the principal under, for handlers
MOUNT_REFUSED_KEY = "dockyard.mount_refused"  # set when the caller may not read a mount's source
# Where an automatic mount may take its blob from: frozenset of project names, None for anywhere. Absent:
# anywhere too (no gate, or htpasswd mode, where every user may do everything).
MOUNT_SOURCES_KEY = "dockyard.mount_sources"
TOKEN_CACHE_TTL = 60.0  # a retired key's tokens stop working within this (plus the key ring's refresh)

_READ_METHODS = frozenset({"GET", "HEAD"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UPLOAD_ROUTES = frozenset({"upload_start", "upload"})
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


class GatePolicy(AccessGranter, Protocol):
    """`dockyard.auth.policy.AccessPolicy` fits: scopes for Basic credentials, and where an automatic
    mount may take a blob from."""

    def pullable_projects(self, principal: Principal) -> Visibility: ...


class TokenVerifier(Protocol):
    """dockyard's TokenService, or the ExternalTokenVerifier of registry:2's rootcertbundle mode."""

    def verify(self, token: str) -> VerifiedToken: ...


def required_scopes(
    route_key: str, args: Sequence[str], method: str, query_string: bytes = b""
) -> list[Scope]:
    """The scopes a /v2 request needs, as registry:2 asks for them: pull to read, pull+push to
    write, delete to delete (a token's `*` covers it), `registry:catalog:*` for the catalog, nothing
    beyond a valid login for /v2/ itself. Upload sessions all need pull+push, cancelling included
    (it is part of pushing); a cross-repository mount needs pull on the source as well.
    Raises NameInvalid for a name no scope can name."""
    if route_key == "base":
        return []
    if route_key == "catalog":
        return [CATALOG_SCOPE]
    name = validate_name(args[0])
    if route_key in _UPLOAD_ROUTES or method in _WRITE_METHODS:
        needed = [repository_scope(name, PULL, PUSH)]
        source = mount_source_scope(route_key, args, method, query_string)
        return [*needed, source] if source else needed
    if method in _READ_METHODS:
        return [repository_scope(name, PULL)]
    return [repository_scope(name, DELETE)]


def mount_source_scope(route_key: str, args: Sequence[str], method: str, query_string: bytes) -> Scope | None:
    """Pull on the source of a cross-repository mount from another repository: the last of
    required_scopes' answer for such a request, and the only one a caller may lack (no mount then)."""
    if route_key != "upload_start" or method != "POST" or b"mount=" not in query_string:
        return None
    source = parse_qs(query_string.decode("latin-1")).get("from", [""])[0]
    if not source or source == args[0]:
        return None
    # A bad source name is the handler's to report; it just cannot be mounted from.
    with contextlib.suppress(NameInvalid):
        return repository_scope(validate_name(source), PULL)
    return None


def is_automatic_mount(route_key: str, method: str, query_string: bytes) -> bool:
    """`POST .../uploads/?mount=<digest>` without `from`: mount from whichever repository has it."""
    if route_key != "upload_start" or method != "POST" or b"mount=" not in query_string:
        return False
    return not parse_qs(query_string.decode("latin-1")).get("from", [""])[0]


class Challenge:
    """Builds the 401 answers. The realm is fixed by config, or is this server's /token as the
    client reached it (scheme and Host of the request)."""

    def __init__(self, service: str, realm: str | None = None, base_url: str | None = None) -> None:
        self.service = service
        self.realm = realm
        self.base_url = base_url.rstrip("/") if base_url else None

    def realm_for(self, scope: ASGIScope) -> str:
        if self.realm:
            return self.realm
        if self.base_url:
            return f"{self.base_url}/token"
        host = _header(scope, b"host")
        server = scope.get("server")
        if host is None or not _SAFE_HOST.match(host.decode("latin-1")):
            host = f"{server[0]}:{server[1]}".encode() if server else b"localhost"
        return f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}/token"

    def bearer(self, scope: ASGIScope, required: Sequence[Scope], error: str | None = None) -> str:
        parts = [f'Bearer realm="{_quoted(self.realm_for(scope))}"', f'service="{_quoted(self.service)}"']
        wanted = format_scopes(required)
        if wanted:
            parts.append(f'scope="{wanted}"')
        if error:
            parts.append(f'error="{error}"')
        return ",".join(parts)


class TokenGate:
    """Bearer tokens (dockyard's own or an external issuer's), and optionally Basic credentials
    checked (`auth.remembered`, with an Authenticator) against the access policy."""

    def __init__(
        self,
        verifier: TokenVerifier,
        challenge: Challenge,
        *,
        logins: RememberedLogins | None = None,  # Basic credentials: the composition root's, shared
        policy: GatePolicy | None = None,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
        generation: Generation | None = None,  # moves on any account/key change: caches forget
        standing: PrincipalStanding | None = None,  # checks a bearer token's principal on each use
    ) -> None:
        if (logins is None) != (policy is None):
            raise ValueError("Basic credentials need both the remembered logins and a policy")
        self.verifier = verifier
        self.standing = standing
        self.challenge = challenge
        self.basic = logins
        self.policy = policy
        self.tokens = GenerationCache[bytes, VerifiedToken](generation, entries(max_entries), clock=clock)
        self.grants = GenerationCache[bytes, bool](generation, entries(max_entries), clock=clock)
        self.clock = clock

    def forget_verified_tokens(self) -> None:
        """Verify every token again from now on (after a signing key is retired: its tokens are
        refused at once, not when their remembered verification runs out)."""
        self.tokens.clear()

    async def check(
        self, scope: ASGIScope, route_key: str, args: Sequence[str], method: str
    ) -> Principal | Response:
        # NameInvalid goes to the router, which answers it as every handler's errors.
        required = required_scopes(route_key, args, method, scope.get("query_string", b""))
        try:
            authorization = parse_authorization(_header(scope, b"authorization"))
        except AuthorizationTooLarge:
            return error_response(OCICode.UNAUTHORIZED, "the Authorization header is too large", 431)
        if authorization is None:
            return self._unauthorized(scope, required)
        query_string = scope.get("query_string", b"")
        optional = mount_source_scope(route_key, args, method, query_string)
        verdict: Principal | Response
        if authorization.scheme == b"bearer":
            verdict = await self._check_bearer(scope, authorization.credentials, required, optional)
        elif authorization.scheme == b"basic" and self.basic is not None:
            verdict = await self._check_basic(scope, authorization.credentials, required, optional)
        else:
            return self._unauthorized(scope, required)
        if isinstance(verdict, Principal) and is_automatic_mount(route_key, method, query_string):
            await self._automatic_mount_sources(scope, verdict)
        return verdict

    async def _automatic_mount_sources(self, scope: ASGIScope, principal: Principal) -> None:
        """Mark where an automatic mount may take its blob from: the projects this caller may pull from
        (decided by who it is, not by its token's scopes, which name only the target)."""
        if self.policy is None:  # external tokens: nothing says what else the caller may read
            scope[MOUNT_REFUSED_KEY] = True
            return
        pullable = await anyio.to_thread.run_sync(self.policy.pullable_projects, principal)
        scope[MOUNT_SOURCES_KEY] = None if pullable.all else pullable.projects

    async def _check_bearer(
        self, scope: ASGIScope, raw: bytes, required: list[Scope], optional: Scope | None
    ) -> Principal | Response:
        key = hashlib.sha256(raw).digest()
        verified = self.tokens.get(key)
        if verified is None:
            try:
                verified = self.verifier.verify(raw.decode("ascii"))
            except (TokenInvalid, UnicodeDecodeError):
                return self._unauthorized(scope, required, "invalid_token")
            if verified.cacheable:
                self.tokens.put(key, verified, None, min(verified.expires_at, self.clock() + TOKEN_CACHE_TTL))
        # Known from here on, also when refused: the audit log names who was denied.
        principal = verified.principal
        scope[PRINCIPAL_KEY] = principal
        needed = [wanted for wanted in required if wanted != optional]
        # What the token carries, then whether the principal still stands (account, credential,
        # the permission behind each scope): access ends when they do, not when the token expires.
        standing = Verdict.ALLOWED
        if verified.access.permits_all(needed):
            standing = await self._standing(principal, needed)
            if standing is Verdict.REVOKED:
                return self._unauthorized(scope, required, "invalid_token")
        if standing is not Verdict.ALLOWED or not verified.access.permits_all(needed):
            # The client may come back with a token for this scope: challenge, and say why.
            denied = not principal.is_anonymous
            return self._unauthorized(scope, required, "insufficient_scope", denied=denied)
        if optional is not None and (
            not verified.access.permits_all([optional])
            or await self._standing(principal, [optional]) is not Verdict.ALLOWED
        ):
            scope[MOUNT_REFUSED_KEY] = True
        return principal

    async def _standing(self, principal: Principal, wanted: list[Scope]) -> Verdict:
        if self.standing is None:  # external tokens: nothing to check them against
            return Verdict.ALLOWED
        remembered = self.standing.remembered(principal, wanted)
        if remembered is not None:
            return remembered
        return await anyio.to_thread.run_sync(self.standing.check, principal, wanted)

    async def _check_basic(
        self, scope: ASGIScope, raw: bytes, required: list[Scope], optional: Scope | None
    ) -> Principal | Response:
        assert self.basic is not None and self.policy is not None
        principal = await self.basic.principal(raw, _client_ip(scope))
        if principal is None:
            return self._unauthorized(scope, required)
        scope[PRINCIPAL_KEY] = principal
        needed = [wanted for wanted in required if wanted != optional]
        if needed and not await self._basic_allows(principal, raw, needed):
            return error_response(OCICode.DENIED, "requested access to the resource is denied", 403)
        if optional is not None and not await self._basic_allows(principal, raw, [optional]):
            scope[MOUNT_REFUSED_KEY] = True
        return principal

    async def _basic_allows(self, principal: Principal, raw: bytes, wanted: list[Scope]) -> bool:
        assert self.basic is not None and self.policy is not None
        # Per credentials and project: the answer is the same for every repository of a project.
        key = hashlib.sha256(raw + b"\n" + format_scopes(decision_scopes(wanted)).encode()).digest()
        allowed = self.grants.get(key)
        if allowed is None:
            noted = self.grants.current_generation()
            granted = await anyio.to_thread.run_sync(self.policy.grant, principal, wanted)
            allowed = AccessSet.of(intersect(wanted, granted)).permits_all(wanted)
            self.grants.put(key, allowed, noted, self.clock() + self.basic.ttl)
        return allowed

    def _unauthorized(
        self, scope: ASGIScope, required: Sequence[Scope], error: str | None = None, denied: bool = False
    ) -> Response:
        challenge = {"WWW-Authenticate": self.challenge.bearer(scope, required, error)}
        if denied:
            return error_response(
                OCICode.DENIED, "requested access to the resource is denied", 401, headers=challenge
            )
        return error_response(
            OCICode.UNAUTHORIZED, "authentication required", 401, _detail(required), challenge
        )


class BasicGate:
    """registry:2's htpasswd mode: Basic credentials only; every valid user may do everything."""

    def __init__(self, logins: RememberedLogins, realm: str) -> None:
        self.realm = realm
        self.basic = logins

    async def check(
        self, scope: ASGIScope, route_key: str, args: Sequence[str], method: str
    ) -> Principal | Response:
        try:
            authorization = parse_authorization(_header(scope, b"authorization"))
        except AuthorizationTooLarge:
            return error_response(OCICode.UNAUTHORIZED, "the Authorization header is too large", 431)
        principal = None
        if authorization is not None and authorization.is_basic:
            principal = await self.basic.principal(authorization.credentials, _client_ip(scope))
        if principal is None:
            challenge = {"WWW-Authenticate": f'Basic realm="{_quoted(self.realm)}"'}
            return error_response(OCICode.UNAUTHORIZED, "authentication required", 401, headers=challenge)
        scope[PRINCIPAL_KEY] = principal
        return principal


class Gate(Protocol):
    async def check(
        self, scope: ASGIScope, route_key: str, args: Sequence[str], method: str
    ) -> Principal | Response: ...


def _header(scope: ASGIScope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _client_ip(scope: ASGIScope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _detail(required: Sequence[Scope]) -> list[dict[str, str]] | None:
    """registry:2's detail: one {Type, Name, Action} per needed action."""
    detail = [
        {"Type": scope.type, "Name": scope.name, "Action": action}
        for scope in required
        for action in sorted(scope.actions)
    ]
    return detail or None
