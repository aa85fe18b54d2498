"""Logins under way (`oidc_login_states`), on SQLite and PostgreSQL: a state finishes once, in the
browser that started it, within its 10 minutes; PKCE's verifier goes to the code exchange; userinfo
about another subject is refused; a flood of starts stops at the cap. The provider is a stand-in here
(its answers are the test's); tests/integration/test_oidc.py runs a real one."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select, update

from dockyard.accounts.models import OIDCLoginStateRow
from dockyard.config.auth_settings import OIDCSettings
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.oidc.client import ProviderMetadata
from dockyard.oidc.interfaces import OIDCLoginFailed, OIDCUnavailable
from dockyard.oidc.logins import OIDCLogins
from tests.unit.accounts.fixtures import migrated_database

ISSUER = "https://sso.example.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SETTINGS = OIDCSettings(
    issuer=ISSUER, client_id="dockyard", client_secret="s3cret", admin_groups=["admins"],
    redirect_uri="https://registry.example.com/ui/oidc/callback",
)  # fmt: skip


class Provider:
    """Answers as a provider would for the codes the test hands out."""

    redirect_uri = SETTINGS.redirect_uri or ""

    def __init__(self) -> None:
        self.codes: dict[str, tuple[str, str, dict[str, Any]]] = {}  # code -> (nonce, challenge, claims)
        self.exchanges: list[tuple[str, str]] = []
        self.userinfo_claims: dict[str, Any] | None = None

    def metadata(self) -> ProviderMetadata:
        return ProviderMetadata(ISSUER, f"{ISSUER}/auth", f"{ISSUER}/token", f"{ISSUER}/jwks", None, ())

    def jwks(self, refresh: bool = False) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
        return {"keys": [{**jwk, "kid": "k1"}]}

    def authorize(self, url: str, claims: dict[str, Any]) -> tuple[str, str]:
        """The user logged in at the provider: (code, state) to come back with."""
        query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
        code = f"code-{len(self.codes)}"
        self.codes[code] = (query["nonce"], query["code_challenge"], claims)
        return code, query["state"]

    def exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        self.exchanges.append((code, code_verifier))
        nonce, challenge, claims = self.codes.pop(code)  # a code works once at a provider too
        digest = hashlib.sha256(code_verifier.encode()).digest()
        assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge, "PKCE verifier"
        now = int(time.time())
        body = {"iss": ISSUER, "aud": "dockyard", "sub": "s-1", "iat": now, "exp": now + 60, "nonce": nonce}
        token = jwt.encode({**body, **claims}, KEY, algorithm="RS256", headers={"kid": "k1"})
        return {"id_token": token, "access_token": "at"}

    def userinfo(self, access_token: str) -> dict[str, Any] | None:
        return self.userinfo_claims


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_database(tmp_path)
    yield database
    database.dispose()


def logins_on(db: Database, provider: Provider, **options: Any) -> OIDCLogins:
    return OIDCLogins(db, provider, SETTINGS, **options)  # type: ignore[arg-type]


def test_a_login_finishes_once_in_its_browser_with_its_verifier(db: Database) -> None:
    provider = Provider()
    logins = logins_on(db, provider)
    url, binding = logins.start("/ui/projects/team")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [SETTINGS.redirect_uri]
    code, state = provider.authorize(url, {"preferred_username": "erin", "groups": ["admins", "devs"]})
    with pytest.raises(OIDCLoginFailed, match="another browser"):
        logins.finish(code, state, "another-browsers-binding")
    assert provider.exchanges == []  # refused before the provider is asked
    done = logins.finish(code, state, binding)
    assert (done.identity.username, done.identity.subject, done.next_path) == (
        "erin",
        "s-1",
        "/ui/projects/team",
    )
    assert done.identity.is_admin and done.identity.groups == {"admins", "devs"}
    with pytest.raises(OIDCLoginFailed, match="unknown"):
        logins.finish(code, state, binding)  # replayed
    assert len(provider.exchanges) == 1


def test_an_expired_login_is_refused_and_forgotten(db: Database) -> None:
    provider = Provider()
    logins = logins_on(db, provider)
    url, binding = logins.start("/ui/projects")
    code, state = provider.authorize(url, {"preferred_username": "erin"})
    with db.write() as connection:
        connection.execute(update(OIDCLoginStateRow).values(expires_at=utcnow()))
    with pytest.raises(OIDCLoginFailed, match="expired"):
        logins.finish(code, state, binding)
    assert provider.exchanges == []
    with db.read() as connection:
        assert connection.execute(select(func.count()).select_from(OIDCLoginStateRow)).scalar_one() == 0


def test_a_flood_of_starts_stops_at_the_cap_and_expired_ones_make_room(db: Database) -> None:
    logins = logins_on(db, Provider(), max_pending=3)
    for _ in range(3):
        logins.start("/ui/projects")
    with pytest.raises(OIDCUnavailable, match="too many"):
        logins.start("/ui/projects")
    with db.write() as connection:
        connection.execute(update(OIDCLoginStateRow).values(expires_at=utcnow()))
    logins.start("/ui/projects")


def test_userinfo_about_another_subject_is_refused_and_fills_in_what_the_id_token_lacks(db: Database) -> None:
    provider = Provider()
    logins = logins_on(db, provider)
    url, binding = logins.start("/ui/projects")
    code, state = provider.authorize(url, {"preferred_username": "erin"})
    provider.userinfo_claims = {"sub": "someone-else", "groups": ["admins"]}
    with pytest.raises(OIDCLoginFailed, match="another subject"):
        logins.finish(code, state, binding)
    url, binding = logins.start("/ui/projects")
    code, state = provider.authorize(url, {"preferred_username": "erin"})
    bad_names = ["devs", " padded ", "tab\there", "x" * 600, 42, ""]
    provider.userinfo_claims = {"sub": "s-1", "preferred_username": "mallory", "groups": bad_names}
    done = logins.finish(code, state, binding)
    # The ID token's claims win; unusable group names are left out, not a refused login.
    assert (done.identity.username, done.identity.groups) == ("erin", {"devs"})
