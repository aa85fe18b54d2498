"""Signing and verifying the registry's bearer tokens (Docker token spec, docs/spec/auth/jwt.md).

Tokens are ES256 JWTs: `iss`, `sub` (the principal's name, "" when anonymous), `aud` (the service),
`exp`, `nbf`, `iat`, `jti`, and `access`, the granted scopes. Keys live in the DB (`auth_signing_keys`)
so every node signs and verifies with the same ones; each node keeps them parsed in memory, because
parsing a PEM costs more than signing.

Refresh tokens (handed out for `offline_token=true`) are JWTs of the same keys with another audience,
so neither kind can stand in for the other. They carry no access: each use asks the policy again.

Both kinds name the credential the login used (`crd`: a fingerprint of the password or robot secret
hash, or the personal token's id and fingerprint; never a secret), so they can die with it: each use
of a refresh token checks it (`PrincipalLookup.reload`), and the /v2 gate checks a bearer token's
(`dockyard.auth.standing`). A directory (LDAP) password cannot be watched: no refresh token for it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import insert, select, update

from dockyard.auth.interfaces import (
    ANONYMOUS,
    AuthenticationFailed,
    Authenticator,
    Credential,
    Principal,
    PrincipalKind,
    Scope,
)
from dockyard.auth.models import SigningKey
from dockyard.auth.remembered import remembered_key
from dockyard.auth.scopes import REGISTRY, REPOSITORY, WILDCARD, AccessSet
from dockyard.auth.singleflight import SingleFlight
from dockyard.coordination.caches import GenerationCache, entries
from dockyard.coordination.interfaces import Generation
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import Category, DockyardError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# PyJWT and cryptography load where tokens are signed or verified (`TOKEN_MODULES`), not in every
# process that imports the gate: a registry without dockyard's own auth (as the test suite's servers
# run) never loads them. `dockyard serve` preloads them before the fork where its auth mode signs
# tokens (app.auth.AUTH_MODULES), so its workers start with them.
TOKEN_MODULES = ("jwt", "cryptography.hazmat.primitives.serialization", "dockyard.auth.keystore")

log = logging.getLogger("dockyard.auth.tokens")

ALGORITHM = "ES256"
MIN_LIFETIME = 60  # the spec: never hand out a token with less than 60 s to live
REFRESH_LIFETIME = 30 * 24 * 3600
MAX_TOKEN_LENGTH = 16 * 1024  # far above any real token; longer input is not even parsed
_REFRESH_AUDIENCE_PREFIX = "dockyard-refresh:"
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "nbf", "iat"]


class TokenInvalid(DockyardError):
    """Forged, expired, not yet valid, for another service or issuer, or signed by an unknown key.
    Which one is logged, never told to the client."""

    category = Category.UNAUTHENTICATED
    message = "invalid token"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str  # RFC 3339, UTC


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: Principal
    access: AccessSet
    expires_at: float  # epoch seconds
    # False when the keys it was checked against may be stale (a change was announced that the ring has
    # not reloaded yet: reloads are at most one a second): then it must not be remembered.
    cacheable: bool = True


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` format the spec asks for: SHA-256 of the DER public key, first 240 bits, base32,
    in 12 groups of 4 joined by ':'."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, 48, 4))


@dataclass(frozen=True, slots=True)
class LoadedKey:
    kid: str
    # None: this process cannot decrypt it (another node's key under another secret): it verifies only.
    private_key: ec.EllipticCurvePrivateKey | None
    public_key: ec.EllipticCurvePublicKey
    created_at: datetime


class KeyRing:
    """The signing keys, read from the DB and kept parsed. The newest unretired key signs; any
    unretired key verifies. A key another node created or retired is seen within `refresh_interval`
    (at once for an unknown `kid`, at most every `miss_interval`, so forged kids cannot flood the DB).
    With a `generation` source (the change feed's AUTH topic) a rotation or retirement announced by
    another process is seen within `min_reload_interval` of the announcement reaching this process;
    `announce` is called after this ring's own rotations and retirements are committed.

    `passphrase` (http.secret, the same on every node, or a secret in the data directory: never in the
    database) encrypts the private keys at rest. `older_passphrases` are what keys may still be under
    (None: stored in the clear by an older version; `keystore.encrypt_at_rest` moves them to
    `passphrase`). A key no passphrase opens (another node's, under another secret) still verifies,
    from its public key; the ring then signs with its newest key it can open, or makes one."""

    def __init__(
        self,
        db: Database,
        passphrase: bytes | None = None,
        refresh_interval: float = 60.0,
        miss_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        generation: Generation | None = None,
        announce: Callable[[], None] | None = None,
        min_reload_interval: float = 1.0,
        older_passphrases: Sequence[bytes | None] = (),
    ) -> None:
        self.db = db
        self.generation = generation
        self.announce = announce
        # While the feed cannot vouch for anything (Redis away) its generation moves on every read:
        # this bounds the reloads that cause to one a second.
        self.min_reload_interval = min_reload_interval
        self._loaded_generation: int | None = None
        self.passphrase = passphrase
        self.older_passphrases = tuple(older_passphrases)
        self.refresh_interval = refresh_interval
        self.miss_interval = miss_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._first_key = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signing: LoadedKey | None = None
        self._loaded_at: float | None = None
        self._last_miss_reload = -float("inf")

    def signing_key(self) -> LoadedKey:
        """The key new tokens are signed with; the first call on an empty DB creates one."""
        self._refresh_if_stale()
        signing = self._signing
        if signing is None:
            # One thread makes the first key: concurrent first logins each made one, and a token signed
            # with a key another thread's reload did not see failed its own verification.
            with self._first_key:
                signing = self._signing
                if signing is None:
                    self.rotate()
                    signing = self._signing
            assert signing is not None
        return signing

    def verification_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        self._refresh_if_stale()
        key = self._keys.get(kid)
        if key is None and self.clock() - self._last_miss_reload >= self.miss_interval:
            self._last_miss_reload = self.clock()
            self.reload()
            key = self._keys.get(kid)
        return key.public_key if key else None

    def rotate(self) -> str:
        """Create a new key; it signs from now on (on other nodes within `refresh_interval`)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from dockyard.auth import keystore

        private_key = ec.generate_private_key(ec.SECP256R1())
        public_key = private_key.public_key()
        kid = libtrust_key_id(public_key)
        row = {
            "kid": kid,
            "algorithm": ALGORITHM,
            "private_key": keystore.seal(private_key, self.passphrase),
            "public_key": public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            "created_at": utcnow(),
        }
        with self.db.write() as connection:
            connection.execute(insert(SigningKey).values(**row))
        log.info("created token signing key %s", kid)
        self.reload()
        self._announce()
        return kid

    def retire(self, kid: str) -> bool:
        """Stop signing and accepting tokens of this key. True if it was active."""
        with self.db.write() as connection:
            result = connection.execute(
                update(SigningKey)
                .where(SigningKey.kid == kid, SigningKey.retired_at.is_(None))
                .values(retired_at=utcnow())
            )
        self.reload()
        self._announce()
        return bool(result.rowcount)

    def is_current(self) -> bool:
        """No key change was announced since this ring loaded (always, without an announcement feed)."""
        return self.generation is None or self.generation() == self._loaded_generation

    def active_kids(self) -> list[str]:
        self._refresh_if_stale()
        return list(self._keys)

    def reload(self) -> None:
        # One reload at a time, its read included: a reload that read before a new key committed must
        # not replace, after it, the keys a later reload read with it (a burst of first logins on an
        # empty database made a key, then a slower reload forgot it and its tokens failed to verify).
        with self._lock:
            self._reload_now()

    def _reload_now(self) -> None:
        generation = self.generation() if self.generation is not None else None  # before the read
        with self.db.read() as connection:
            rows = connection.execute(
                select(SigningKey.kid, SigningKey.private_key, SigningKey.public_key, SigningKey.created_at)
                .where(SigningKey.retired_at.is_(None), SigningKey.algorithm == ALGORITHM)
                .order_by(SigningKey.created_at)
            ).all()
        keys: dict[str, LoadedKey] = {}
        for kid, pem, public_pem, created_at in rows:
            loaded = self._keys.get(kid) or self._parse(kid, pem, public_pem, created_at)
            if loaded is not None:
                keys[kid] = loaded
        self._keys = keys
        signers = [key for key in keys.values() if key.private_key is not None]
        self._signing = max(signers, key=lambda k: k.created_at) if signers else None
        self._loaded_at = self.clock()
        self._loaded_generation = generation

    def _parse(self, kid: str, pem: str, public_pem: str, created_at: datetime) -> LoadedKey | None:
        from dockyard.auth import keystore

        private_key = keystore.open_key(pem, (self.passphrase, *self.older_passphrases))
        if private_key is not None:
            return LoadedKey(kid, private_key, private_key.public_key(), created_at)
        verifier = keystore.public_key(public_pem)
        if verifier is None:
            log.error("token signing key %s cannot be read: skipped", kid)
            return None
        log.warning(
            "token signing key %s cannot be decrypted here (another http.secret?): it only verifies", kid
        )
        return LoadedKey(kid, None, verifier, created_at)

    def _refresh_if_stale(self) -> None:
        if self._stale():
            with self._lock:
                if self._stale():  # requests that waited for another's reload do not read again
                    self._reload_now()

    def _stale(self) -> bool:
        loaded_at = self._loaded_at
        age = self.clock() - loaded_at if loaded_at is not None else None
        return age is None or age >= self.refresh_interval or self._announced_elsewhere(age)

    def _announced_elsewhere(self, age: float) -> bool:
        """Another process announced a key change since this ring loaded (checked at most once a second)."""
        if self.generation is None or age < self.min_reload_interval:
            return False
        return self.generation() != self._loaded_generation

    def _announce(self) -> None:
        if self.announce is not None:
            try:
                self.announce()
            except Exception:  # the change is committed; other nodes still see it within refresh_interval
                log.exception("could not announce a signing key change")


class TokenService:
    """Issues and verifies dockyard's own tokens. CPU only, except a key reload about once a minute."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        service: str,
        lifetime: float,
        refresh_lifetime: float = REFRESH_LIFETIME,
        leeway: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.service = service
        self.lifetime = max(MIN_LIFETIME, int(lifetime))
        self.refresh_lifetime = int(refresh_lifetime)
        self.leeway = leeway
        self.clock = clock

    def issue(self, principal: Principal, granted: Sequence[Scope]) -> IssuedToken:
        now = int(self.clock())
        claims = self._claims(principal, self.service, now, self.lifetime)
        claims["access"] = [scope.to_claim() for scope in granted if scope.actions]
        return IssuedToken(self._sign(claims), self.lifetime, _rfc3339(now))

    def issue_refresh(self, principal: Principal) -> str:
        if principal.is_anonymous:
            raise ValueError("anonymous callers get no refresh token")
        now = int(self.clock())
        audience = _REFRESH_AUDIENCE_PREFIX + self.service
        return self._sign(self._claims(principal, audience, now, self.refresh_lifetime))

    def verify(self, token: str) -> VerifiedToken:
        """An access token's principal and access; raises TokenInvalid."""
        claims = self._decode(token, self.service)
        access = AccessSet.from_claim(claims.get("access"))
        return VerifiedToken(_principal(claims), access, float(claims["exp"]), self.keys.is_current())

    def verify_refresh(self, token: str) -> Principal:
        """Whom a refresh token was issued to; raises TokenInvalid. The caller checks they may still
        log in (not disabled, not expired) before issuing anything for them."""
        principal = _principal(self._decode(token, _REFRESH_AUDIENCE_PREFIX + self.service))
        if principal.is_anonymous:
            raise TokenInvalid()
        return principal

    def _claims(self, principal: Principal, audience: str, now: int, lifetime: int) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": principal.name,
            "aud": audience,
            "exp": now + lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "kind": principal.kind.value,
        }
        if principal.id is not None:
            claims["uid"] = principal.id
        if principal.credential is not None:
            claims["crd"] = principal.credential.to_claim()
        return claims

    def _sign(self, claims: dict[str, Any]) -> str:
        import jwt

        key = self.keys.signing_key()
        assert key.private_key is not None  # the ring signs only with keys it could decrypt
        headers = {"kid": key.kid, "typ": "JWT"}
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        import jwt

        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid()
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if header.get("alg") != ALGORITHM or not isinstance(kid, str):
                raise TokenInvalid()
            key = self.keys.verification_key(kid)
            if key is None:
                log.info("token signed by an unknown or retired key %r", kid[:64])
                raise TokenInvalid()
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            log.info("token refused: %s", exc)
            raise TokenInvalid() from None
        if not isinstance(claims.get("sub"), str):
            raise TokenInvalid()
        return claims


def _principal(claims: dict[str, Any]) -> Principal:
    name: str = claims["sub"]
    uid = claims.get("uid")
    try:
        kind = PrincipalKind(claims.get("kind") or (PrincipalKind.USER if name else PrincipalKind.ANONYMOUS))
    except ValueError:
        raise TokenInvalid() from None
    if (kind is PrincipalKind.ANONYMOUS) != (name == ""):
        raise TokenInvalid()
    credential = None
    if "crd" in claims:
        credential = Credential.from_claim(claims["crd"])
        if credential is None:
            raise TokenInvalid()
    account_id = uid if isinstance(uid, int) and not isinstance(uid, bool) else None
    return Principal(kind, name, account_id, credential=credential)


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccessGranter(Protocol):
    """`dockyard.auth.policy.AccessPolicy` fits: the intersection of what is asked and allowed."""

    def grant(self, principal: Principal, requested: Sequence[Scope]) -> list[Scope]: ...


class PrincipalLookup(Protocol):
    """Refresh tokens outlive passwords: each use checks the principal may still log in.
    `dockyard.auth.local.LocalAuthenticator` fits."""

    def reload(self, principal: Principal) -> Principal:
        """The principal as it is now (admin flag, groups); AuthenticationFailed when it is gone,
        disabled or expired, or the credential it logged in with changed or went."""
        ...


@dataclass(frozen=True, slots=True)
class TokenGrant:
    token: IssuedToken
    scopes: list[Scope]  # what the token carries
    refresh_token: str | None = None


class TokenIssuer:
    """The token endpoint's work without HTTP: who is asking, what they get, the signed token.

    What the policy returns is intersected with what was asked once more here, so a policy bug can
    never widen a token beyond the request. Refresh tokens are only offered when `lookup` is given.
    """

    def __init__(
        self,
        tokens: TokenService,
        authenticator: Authenticator,
        policy: AccessGranter,
        lookup: PrincipalLookup | None = None,
        *,
        login_ttl: float = 30.0,
        max_logins: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        generation: Generation | None = None,
    ) -> None:
        self.tokens = tokens
        self.authenticator = authenticator
        self.policy = policy
        self.lookup = lookup
        # Clients ask for a token per scope set, each time with the password: remembering a success
        # briefly spares argon2/bcrypt (tens of ms by design) on all but the first. A disabled
        # account or changed password takes effect within login_ttl, or as soon as `generation`
        # (the change feed's AUTH topic) says accounts changed somewhere.
        self.login_ttl = login_ttl
        self.clock = clock
        self.logins = GenerationCache[bytes, Principal](generation, entries(max_logins), clock=clock)
        # A client's burst with new credentials (one request per connection, all at once) shares
        # one check instead of hashing the password once per request (7 MiB each).
        self.in_flight = SingleFlight[Principal | None]()

    @property
    def offers_refresh_tokens(self) -> bool:
        return self.lookup is not None

    def anonymous(self, requested: Sequence[Scope]) -> TokenGrant:
        return self._grant(ANONYMOUS, requested, None)

    def by_password(
        self, username: str, secret: str, requested: Sequence[Scope], client_ip: str | None, offline: bool
    ) -> TokenGrant:
        """Raises AuthenticationFailed (never saying which part was wrong)."""
        # Per address too, as RememberedLogins: a refused address never rides on another's success.
        credentials = f"{username}\0{secret}".encode(errors="surrogatepass")
        key = remembered_key(client_ip, credentials)
        principal = self.logins.get(key) if self.login_ttl > 0 else None
        if principal is None:
            check = functools.partial(self._check_and_remember, key, username, secret, client_ip)
            principal = self.in_flight.run(key, check)
        if principal is None:
            raise AuthenticationFailed()
        refresh = self.tokens.issue_refresh(principal) if offline and self._refreshable(principal) else None
        return self._grant(principal, requested, refresh)

    def _refreshable(self, principal: Principal) -> bool:
        """A refresh token must die with its credential: not offered for one whose changes dockyard
        cannot see (a directory password; the client keeps sending the password instead)."""
        return self.lookup is not None and (principal.credential is None or principal.credential.revocable)

    def _check_and_remember(
        self, key: bytes, username: str, secret: str, client_ip: str | None
    ) -> Principal | None:
        """None for a refusal: each caller raises its own AuthenticationFailed, not a shared one."""
        noted = self.logins.current_generation()
        try:
            principal = self.authenticator.authenticate(username, secret, client_ip)
        except AuthenticationFailed:
            return None
        if self.login_ttl > 0:
            self.logins.put(key, principal, noted, self.clock() + self.login_ttl)
        return principal

    def by_refresh_token(self, refresh_token: str, requested: Sequence[Scope]) -> TokenGrant:
        """Raises AuthenticationFailed for an invalid token or a principal that may no longer log in."""
        if self.lookup is None:
            raise AuthenticationFailed()
        try:
            principal = self.tokens.verify_refresh(refresh_token)
        except TokenInvalid:
            raise AuthenticationFailed() from None
        return self._grant(self.lookup.reload(principal), requested, refresh_token)

    def _grant(self, principal: Principal, requested: Sequence[Scope], refresh: str | None) -> TokenGrant:
        known = [scope for scope in requested if scope.type in GRANTABLE_TYPES and scope.actions]
        granted = intersect(known, self.policy.grant(principal, known)) if known else []
        return TokenGrant(self.tokens.issue(principal, granted), granted, refresh)


GRANTABLE_TYPES = frozenset({REPOSITORY, REGISTRY})


def intersect(requested: Sequence[Scope], granted: Sequence[Scope]) -> list[Scope]:
    """Each requested scope cut down to the actions granted for its resource; empty ones dropped."""
    allowed = AccessSet.of(granted)
    result: list[Scope] = []
    for scope in requested:
        actions = allowed.entries.get((scope.type, scope.name), frozenset())
        kept = scope.actions if WILDCARD in actions else scope.actions & actions
        if kept:
            result.append(Scope(scope.type, scope.name, kept, scope.resource_class))
    return result
