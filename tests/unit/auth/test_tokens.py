"""Bearer tokens: what dockyard signs is what the spec describes, and nothing else verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.auth.interfaces import (
    ANONYMOUS,
    AuthenticationFailed,
    Credential,
    CredentialKind,
    Principal,
    PrincipalKind,
    Scope,
)
from dockyard.auth.scopes import CATALOG_SCOPE, repository_scope
from dockyard.auth.tokens import (
    KeyRing,
    TokenInvalid,
    TokenIssuer,
    TokenService,
    intersect,
    libtrust_key_id,
)
from dockyard.db.session import Database
from tests.support.postgres import migrated_scratch_database

ALICE = Principal(PrincipalKind.USER, "alice", id=7)
SERVICE, ISSUER = "registry.test", "dockyard-test"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_scratch_database(tmp_path, "test.db")
    yield database
    database.dispose()


@pytest.fixture
def ring(db: Database) -> KeyRing:
    return KeyRing(db)


def service_for(ring: KeyRing, **kwargs: object) -> TokenService:
    options: dict = {"issuer": ISSUER, "service": SERVICE, "lifetime": 300, **kwargs}
    return TokenService(ring, **options)


@pytest.fixture
def tokens(ring: KeyRing) -> TokenService:
    return service_for(ring)


def segments(token: str) -> tuple[dict, dict]:
    head, body, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(head), decode(body)


def forge(claims: dict, key: object, headers: dict, algorithm: str = "ES256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


def good_claims(**overrides: object) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}],
    }
    claims.update(overrides)
    return claims


# --- what a token looks like -----------------------------------------------------------------
def test_token_has_the_spec_header_and_claims(tokens: TokenService) -> None:
    issued = tokens.issue(ALICE, [repository_scope("team/app", "pull", "push"), CATALOG_SCOPE])
    header, claims = segments(issued.token)
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", header["kid"])  # libtrust fingerprint format
    assert claims["iss"] == ISSUER and claims["aud"] == SERVICE and claims["sub"] == "alice"
    assert claims["nbf"] <= claims["iat"] < claims["exp"] == claims["iat"] + 300
    assert claims["jti"]
    assert claims["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert issued.expires_in == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", issued.issued_at)


def test_anonymous_tokens_have_an_empty_subject(tokens: TokenService) -> None:
    issued = tokens.issue(ANONYMOUS, [repository_scope("public/app", "pull")])
    assert segments(issued.token)[1]["sub"] == ""
    assert tokens.verify(issued.token).principal.is_anonymous


def test_tokens_never_live_less_than_60_seconds(ring: KeyRing) -> None:
    assert service_for(ring, lifetime=5).issue(ALICE, []).expires_in == 60


def test_every_token_has_its_own_jti(tokens: TokenService) -> None:
    ids = {segments(tokens.issue(ALICE, []).token)[1]["jti"] for _ in range(20)}
    assert len(ids) == 20


def test_kid_is_the_libtrust_fingerprint_of_the_public_key(ring: KeyRing) -> None:
    key = ring.signing_key()
    der = key.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert key.kid == ":".join(digest[i : i + 4] for i in range(0, 48, 4))


# --- verifying -------------------------------------------------------------------------------
def test_round_trip_gives_principal_and_access(tokens: TokenService) -> None:
    verified = tokens.verify(tokens.issue(ALICE, [repository_scope("team/app", "pull")]).token)
    assert verified.principal == ALICE
    assert verified.access.permits(repository_scope("team/app", "pull"))
    assert not verified.access.permits(repository_scope("team/app", "push"))


def test_another_node_with_the_same_db_verifies_and_signs_with_the_same_key(
    db: Database, tokens: TokenService
) -> None:
    token = tokens.issue(ALICE, []).token
    other = service_for(KeyRing(db))
    assert other.verify(token).principal == ALICE
    assert segments(other.issue(ALICE, []).token)[0]["kid"] == segments(token)[0]["kid"]


def test_rotation_signs_with_the_new_key_and_still_accepts_the_old(
    ring: KeyRing, tokens: TokenService
) -> None:
    old = tokens.issue(ALICE, []).token
    new_kid = ring.rotate()
    new = tokens.issue(ALICE, []).token
    assert segments(new)[0]["kid"] == new_kid != segments(old)[0]["kid"]
    assert tokens.verify(old).principal == ALICE
    assert tokens.verify(new).principal == ALICE


def test_retired_key_tokens_are_refused_everywhere(db: Database, ring: KeyRing, tokens: TokenService) -> None:
    old = tokens.issue(ALICE, []).token
    ring.rotate()
    assert ring.retire(segments(old)[0]["kid"])
    with pytest.raises(TokenInvalid):
        tokens.verify(old)
    # A node that had the key loaded drops it at its next refresh.
    other_ring = KeyRing(db)
    with pytest.raises(TokenInvalid):
        service_for(other_ring).verify(old)


def test_a_key_rotated_on_another_node_is_picked_up_for_verification(
    db: Database, tokens: TokenService
) -> None:
    tokens.issue(ALICE, [])  # this node has loaded its keys
    other_ring = KeyRing(db)
    other_ring.rotate()
    assert tokens.verify(service_for(other_ring).issue(ALICE, []).token).principal == ALICE


def test_keys_encrypted_with_a_passphrase_sign_only_with_it(db: Database) -> None:
    ring = KeyRing(db, passphrase=b"shared secret")
    token = service_for(ring).issue(ALICE, []).token
    assert service_for(KeyRing(db, passphrase=b"shared secret")).verify(token).principal == ALICE
    # Another secret (a node configured differently) cannot sign with that key: it makes its own,
    # and still verifies the first key's tokens with its public key, as the first verifies its own.
    other = service_for(KeyRing(db, passphrase=b"wrong"))
    assert other.verify(token).principal == ALICE
    own = other.issue(ALICE, []).token
    assert jwt.get_unverified_header(own)["kid"] != jwt.get_unverified_header(token)["kid"]
    assert service_for(KeyRing(db, passphrase=b"shared secret")).verify(own).principal == ALICE


def test_expired_token_is_refused(ring: KeyRing) -> None:
    past = service_for(ring, clock=lambda: time.time() - 3600)
    token = past.issue(ALICE, []).token
    with pytest.raises(TokenInvalid):
        service_for(ring).verify(token)


def test_not_yet_valid_token_is_refused(ring: KeyRing) -> None:
    future = service_for(ring, clock=lambda: time.time() + 3600)
    with pytest.raises(TokenInvalid):
        service_for(ring).verify(future.issue(ALICE, []).token)


def test_token_for_another_service_or_from_another_issuer_is_refused(ring: KeyRing) -> None:
    with pytest.raises(TokenInvalid):
        service_for(ring).verify(service_for(ring, service="other").issue(ALICE, []).token)
    with pytest.raises(TokenInvalid):
        service_for(ring).verify(service_for(ring, issuer="other").issue(ALICE, []).token)


def test_token_signed_by_an_unknown_key_with_a_known_kid_is_refused(
    ring: KeyRing, tokens: TokenService
) -> None:
    kid = ring.signing_key().kid
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenInvalid):
        tokens.verify(forge(good_claims(), stranger, {"kid": kid}))


def test_token_with_an_unknown_kid_is_refused(tokens: TokenService) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenInvalid):
        tokens.verify(forge(good_claims(), stranger, {"kid": libtrust_key_id(stranger.public_key())}))


def test_alg_none_is_refused(ring: KeyRing, tokens: TokenService) -> None:
    unsigned = jwt.encode(good_claims(), None, algorithm="none", headers={"kid": ring.signing_key().kid})  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid):
        tokens.verify(unsigned)


def test_hs256_signed_with_the_public_key_is_refused(ring: KeyRing, tokens: TokenService) -> None:
    key = ring.signing_key()
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode()
    ).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(good_claims()).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    ).rstrip(b"=")
    with pytest.raises(TokenInvalid):
        tokens.verify((header + b"." + body + b"." + signature).decode())


def test_tampered_claims_break_the_signature(tokens: TokenService) -> None:
    head, _, signature = tokens.issue(ALICE, [repository_scope("team/app", "pull")]).token.split(".")
    wider = good_claims(access=[{"type": "repository", "name": "team/app", "actions": ["*"]}])
    body = base64.urlsafe_b64encode(json.dumps(wider).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenInvalid):
        tokens.verify(f"{head}.{body}.{signature}")


@pytest.mark.parametrize(
    "garbage", ["", "abc", "a.b.c", "..", "é.é.é", "x" * 20000, "eyJhbGciOiJFUzI1NiJ9.e30."]
)
def test_garbage_is_refused_without_crashing(tokens: TokenService, garbage: str) -> None:
    with pytest.raises(TokenInvalid):
        tokens.verify(garbage)


def test_missing_required_claims_are_refused(ring: KeyRing, tokens: TokenService) -> None:
    key = ring.signing_key()
    for claim in ("exp", "nbf", "iat", "aud", "iss", "sub"):
        claims = good_claims()
        del claims[claim]
        with pytest.raises(TokenInvalid):
            tokens.verify(forge(claims, key.private_key, {"kid": key.kid}))


def test_anonymous_kind_with_a_name_is_refused(ring: KeyRing, tokens: TokenService) -> None:
    key = ring.signing_key()
    with pytest.raises(TokenInvalid):
        tokens.verify(forge(good_claims(kind="anonymous"), key.private_key, {"kid": key.kid}))


# --- refresh tokens --------------------------------------------------------------------------
def test_refresh_and_access_tokens_cannot_stand_in_for_each_other(tokens: TokenService) -> None:
    refresh = tokens.issue_refresh(ALICE)
    access = tokens.issue(ALICE, []).token
    assert tokens.verify_refresh(refresh) == ALICE
    with pytest.raises(TokenInvalid):
        tokens.verify(refresh)
    with pytest.raises(TokenInvalid):
        tokens.verify_refresh(access)
    assert "access" not in segments(refresh)[1]


def test_no_refresh_token_for_anonymous(tokens: TokenService) -> None:
    with pytest.raises(ValueError):
        tokens.issue_refresh(ANONYMOUS)


# --- the issuing flow ------------------------------------------------------------------------
class Accounts:
    """A dict-backed Authenticator and PrincipalLookup."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = passwords
        self.disabled: set[str] = set()

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        if self.passwords.get(username) != secret or username in self.disabled:
            raise AuthenticationFailed()
        return Principal(PrincipalKind.USER, username)

    def reload(self, principal: Principal) -> Principal:
        if principal.name in self.disabled or principal.name not in self.passwords:
            raise AuthenticationFailed()
        return principal


class TablePolicy:
    def __init__(self, table: dict[tuple[str, str], set[str]], overgrant: bool = False) -> None:
        self.table = table
        self.overgrant = overgrant
        self.asked: list[Sequence[Scope]] = []

    def grant(self, principal: Principal, requested: Sequence[Scope]) -> list[Scope]:
        self.asked.append(requested)
        if self.overgrant:  # a buggy policy: everything on everything asked, and more
            return [Scope(s.type, s.name, frozenset({"*"})) for s in requested] + [
                repository_scope("other", "push")
            ]
        result = []
        for scope in requested:
            allowed = self.table.get((principal.name, scope.name), set())
            if scope.actions & allowed:
                result.append(Scope(scope.type, scope.name, scope.actions & allowed, scope.resource_class))
        return result


@pytest.fixture
def accounts() -> Accounts:
    return Accounts({"alice": "wonderland", "bob": "builder"})


def test_token_carries_the_intersection_of_asked_and_allowed(
    tokens: TokenService, accounts: Accounts
) -> None:
    policy = TablePolicy({("alice", "team/app"): {"pull"}})
    issuer = TokenIssuer(tokens, accounts, policy)
    grant = issuer.by_password(
        "alice", "wonderland", [repository_scope("team/app", "pull", "push")], None, False
    )
    assert grant.scopes == [repository_scope("team/app", "pull")]
    assert grant.refresh_token is None
    assert tokens.verify(grant.token.token).access.permits(repository_scope("team/app", "pull"))
    assert not tokens.verify(grant.token.token).access.permits(repository_scope("team/app", "push"))


def test_a_policy_that_grants_too_much_is_cut_back_to_the_request(
    tokens: TokenService, accounts: Accounts
) -> None:
    issuer = TokenIssuer(tokens, accounts, TablePolicy({}, overgrant=True))
    grant = issuer.by_password("alice", "wonderland", [repository_scope("team/app", "pull")], None, False)
    assert grant.scopes == [repository_scope("team/app", "pull")]
    access = tokens.verify(grant.token.token).access
    assert not access.permits(repository_scope("team/app", "delete"))
    assert not access.permits(repository_scope("other", "push"))


def test_unknown_resource_types_never_reach_the_policy(tokens: TokenService, accounts: Accounts) -> None:
    policy = TablePolicy({}, overgrant=True)
    grant = TokenIssuer(tokens, accounts, policy).anonymous([Scope("namespace", "team", frozenset({"push"}))])
    assert grant.scopes == [] and policy.asked == []


def test_wrong_password_and_unknown_user_fail_alike(tokens: TokenService, accounts: Accounts) -> None:
    issuer = TokenIssuer(tokens, accounts, TablePolicy({}))
    for user, password in (("alice", "nope"), ("mallory", "wonderland")):
        with pytest.raises(AuthenticationFailed) as caught:
            issuer.by_password(user, password, [], None, False)
        assert caught.value.message == "authentication required"


def test_refresh_token_gets_new_scopes_and_stops_when_the_user_is_disabled(
    tokens: TokenService, accounts: Accounts
) -> None:
    policy = TablePolicy({("alice", "team/app"): {"pull", "push"}, ("alice", "team/web"): {"pull"}})
    issuer = TokenIssuer(tokens, accounts, policy, lookup=accounts)
    first = issuer.by_password("alice", "wonderland", [], None, offline=True)
    assert first.refresh_token and first.scopes == []
    again = issuer.by_refresh_token(first.refresh_token, [repository_scope("team/web", "pull", "push")])
    assert again.scopes == [repository_scope("team/web", "pull")]
    assert again.refresh_token == first.refresh_token  # the same one back, as oauth.md says
    accounts.disabled.add("alice")
    with pytest.raises(AuthenticationFailed):
        issuer.by_refresh_token(first.refresh_token, [])


def test_without_a_lookup_no_refresh_tokens_are_offered_or_taken(
    tokens: TokenService, accounts: Accounts
) -> None:
    issuer = TokenIssuer(tokens, accounts, TablePolicy({}))
    assert issuer.by_password("alice", "wonderland", [], None, offline=True).refresh_token is None
    with pytest.raises(AuthenticationFailed):
        issuer.by_refresh_token(tokens.issue_refresh(ALICE), [])


def test_intersect_keeps_the_requested_resource_class() -> None:
    asked = [Scope("repository", "team/app", frozenset({"pull"}), "plugin")]
    assert intersect(asked, [repository_scope("team/app", "*")]) == asked


class CountingAccounts(Accounts):
    def __init__(self, passwords: dict[str, str]) -> None:
        super().__init__(passwords)
        self.calls = 0

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        self.calls += 1
        return super().authenticate(username, secret, client_ip)


def test_a_login_is_remembered_for_login_ttl_and_failures_never(tokens: TokenService) -> None:
    accounts = CountingAccounts({"alice": "wonderland"})
    now = [1000.0]
    issuer = TokenIssuer(tokens, accounts, TablePolicy({}), login_ttl=30, clock=lambda: now[0])
    for _ in range(5):
        issuer.by_password("alice", "wonderland", [], None, False)
    assert accounts.calls == 1
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            issuer.by_password("alice", "wonderland-typo", [], None, False)
    assert accounts.calls == 4  # each failure reached the authenticator (and its login limits)
    accounts.disabled.add("alice")
    now[0] += 31
    with pytest.raises(AuthenticationFailed):
        issuer.by_password("alice", "wonderland", [], None, False)


# --- the credential a token names -------------------------------------------------------------
def test_tokens_name_the_credential_of_the_login_and_never_a_secret(tokens: TokenService) -> None:
    credential = Credential(CredentialKind.PERSONAL_TOKEN, "A" * 22, 42)
    alice = Principal(PrincipalKind.USER, "alice", 7, credential=credential)
    refresh = tokens.issue_refresh(alice)
    assert tokens.verify_refresh(refresh).credential == credential
    assert tokens.verify(tokens.issue(alice, []).token).principal.credential == credential
    assert segments(refresh)[1]["crd"] == "pat:42:" + "A" * 22


@pytest.mark.parametrize("claim", ["", "pw", "pw:short", "pat::" + "A" * 22, "pat:x:" + "A" * 22, 7, "dir:x"])
def test_a_token_with_a_malformed_credential_is_refused(
    ring: KeyRing, tokens: TokenService, claim: object
) -> None:
    key = ring.signing_key()
    with pytest.raises(TokenInvalid):
        tokens.verify(forge(good_claims(crd=claim), key.private_key, {"kid": key.kid}))


def test_no_refresh_token_for_a_password_dockyard_cannot_watch(tokens: TokenService) -> None:
    """A directory (LDAP) password may change without dockyard knowing: its login gets no refresh
    token (the client keeps the password and sends it again)."""

    class Directory(Accounts):
        def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
            principal = super().authenticate(username, secret, client_ip)
            return Principal(
                principal.kind, principal.name, 3, credential=Credential(CredentialKind.DIRECTORY)
            )

    accounts = Directory({"dora": "directory password"})
    issuer = TokenIssuer(tokens, accounts, TablePolicy({}), lookup=accounts)
    assert issuer.by_password("dora", "directory password", [], None, offline=True).refresh_token is None


def test_a_reload_that_read_before_a_new_key_does_not_forget_it(db: Database) -> None:
    """A burst of first logins on an empty database: one thread's reload read no key, then another
    made the first key and reloaded; the slow reload, landing last, must not forget the key (its
    tokens then failed to verify: seen once in CI under load)."""
    import threading
    from contextlib import contextmanager

    ring = KeyRing(db)
    read_done, go_on = threading.Event(), threading.Event()
    plain_read = db.read
    made: list[str] = []

    @contextmanager
    def slow_read():  # type: ignore[no-untyped-def]
        with plain_read() as connection:
            yield connection
        if threading.current_thread() is first and not go_on.is_set():
            read_done.set()
            go_on.wait(10)  # the other thread makes and loads the first key meanwhile

    first = threading.Thread(target=ring.reload)
    other = threading.Thread(target=lambda: made.append(ring.signing_key().kid))
    db.read = slow_read  # type: ignore[method-assign]
    try:
        first.start()
        assert read_done.wait(10)
        other.start()
        other.join(0.5)  # with one lock for a whole reload it waits for the slow one: let that finish
        go_on.set()
        first.join(10)
        other.join(10)
    finally:
        db.read = plain_read  # type: ignore[method-assign]
    (kid,) = made
    assert ring.signing_key().kid == kid  # not a second key: the first is still known
    assert ring.verification_key(kid) is not None
