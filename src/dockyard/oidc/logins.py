"""Logins under way, from the browser's trip to the provider to its return.

`start` makes a random `state`, `nonce`, PKCE verifier (S256 challenge) and browser binding, keeps
them in a row of `oidc_login_states` (the state and the binding only as SHA-256) and gives the URL
to send the browser to, and the binding for a cookie. `finish` takes the row for the state (deleting
it: a state works once, a replay finds nothing), checks the binding (the browser that started the
login is the one finishing it), exchanges the code with the verifier and checks the ID token against
the row's nonce. So an attacker who gets a victim to open a callback URL with the attacker's code
(login CSRF) or who captured a state cannot use it from another browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import delete, func, insert, select

from dockyard.accounts.directory import ExternalIdentity
from dockyard.accounts.models import OIDCLoginStateRow
from dockyard.accounts.names import MAX_GROUP_NAME
from dockyard.config.auth_settings import OIDCSettings
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.oidc.client import OIDCClient
from dockyard.oidc.idtoken import verify_id_token
from dockyard.oidc.interfaces import FinishedLogin, OIDCAccountRefused, OIDCLoginFailed, OIDCUnavailable

STATE_LIFETIME = timedelta(minutes=10)
MAX_NEXT = 2048
MAX_PARAMETER = 4096  # code and state as the browser brings them back
MAX_GROUPS = 1000
# Logins under way at once (anyone may start one): past it new ones wait until some finish or expire,
# so a flood of starts cannot grow the table without bound.
MAX_PENDING = 10_000


class OIDCLogins:
    def __init__(
        self, db: Database, client: OIDCClient, settings: OIDCSettings, max_pending: int = MAX_PENDING
    ) -> None:
        self._db = db
        self._max_pending = max_pending
        self._client = client
        self._settings = settings
        self._admin_groups = {name.casefold() for name in settings.admin_groups}
        scopes = ["openid", *(scope for scope in settings.scopes if scope != "openid")]
        self._scope = " ".join(dict.fromkeys(scopes))

    def start(self, next_path: str) -> tuple[str, str]:
        """(the provider's authorization URL to send the browser to, the binding for its cookie)."""
        metadata = self._client.metadata()
        state, nonce, binding = (secrets.token_urlsafe(32) for _ in range(3))
        verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 allows 43 to 128
        challenge = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
        now = utcnow()
        with self._db.write() as connection:
            # Logins nobody finished: dropped here, an index finds them.
            connection.execute(delete(OIDCLoginStateRow).where(OIDCLoginStateRow.expires_at <= now))
            pending = connection.execute(select(func.count()).select_from(OIDCLoginStateRow)).scalar_one()
            if pending >= self._max_pending:
                raise OIDCUnavailable("too many single sign-on logins under way; try again in a few minutes")
            connection.execute(
                insert(OIDCLoginStateRow).values(
                    id=_sha256(state),
                    binding_hash=_sha256(binding),
                    nonce=nonce,
                    code_verifier=verifier,
                    next_path=next_path[:MAX_NEXT],
                    expires_at=now + STATE_LIFETIME,
                )
            )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._settings.client_id,
                "redirect_uri": self._client.redirect_uri,
                "scope": self._scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = metadata.authorization_endpoint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", binding

    def check(self) -> dict[str, Any]:
        """The provider as it answers now (OIDCClient.check)."""
        return self._client.check()

    def finish(self, code: str, state: str, binding: str) -> FinishedLogin:
        """The identity the provider vouches for; OIDCLoginFailed, OIDCAccountRefused or
        OIDCUnavailable otherwise. The state is used up whatever happens after its binding matched."""
        if not code or not state or len(code) > MAX_PARAMETER or len(state) > MAX_PARAMETER:
            raise OIDCLoginFailed("the provider sent no code or state back")
        row = self._take(state, binding)
        tokens = self._client.exchange(code, row.code_verifier)
        claims = verify_id_token(
            tokens.get("id_token", ""),
            self._client.jwks,
            issuer=self._settings.issuer,
            client_id=self._settings.client_id,
            nonce=row.nonce,
        )
        access_token = tokens.get("access_token")
        if isinstance(access_token, str) and access_token:
            info = self._client.userinfo(access_token)
            if info is not None:
                if info.get("sub") != claims["sub"]:
                    raise OIDCLoginFailed("the provider's userinfo is about another subject")
                # The ID token's claims win; userinfo adds what it left out (many providers put
                # profile and group claims only there).
                claims = {**info, **claims}
        return FinishedLogin(self._identity(claims), row.next_path)

    def _take(self, state: str, binding: str) -> Any:
        stale = OIDCLoginFailed("this login is unknown, used or expired: log in again")
        with self._db.write() as connection:
            row = connection.execute(
                select(OIDCLoginStateRow).where(OIDCLoginStateRow.id == _sha256(state))
            ).first()
            if row is None or not binding or not hmac.compare_digest(row.binding_hash, _sha256(binding)):
                raise OIDCLoginFailed(
                    "this login was started in another browser, or is unknown: log in again"
                )
            gone = connection.execute(
                delete(OIDCLoginStateRow).where(OIDCLoginStateRow.id == row.id)
            ).rowcount
        if gone != 1 or row.expires_at <= utcnow():
            raise stale  # another request took it first, or too late
        return row

    def _identity(self, claims: dict[str, Any]) -> ExternalIdentity:
        settings = self._settings
        username = claims.get(settings.username_claim)
        if not isinstance(username, str) or not username:
            raise OIDCAccountRefused(f"the provider sent no {settings.username_claim!r} claim")
        groups: frozenset[str] = frozenset()
        if settings.groups_claim:
            raw = claims.get(settings.groups_claim)
            values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
            groups = frozenset(value for value in values[:MAX_GROUPS] if _usable_group(value))
        email, name = claims.get("email"), claims.get("name")
        return ExternalIdentity(
            username=username,
            email=email[:320] if isinstance(email, str) else None,
            display_name=name[:255] if isinstance(name, str) else None,
            groups=groups,
            is_admin=any(group.casefold() in self._admin_groups for group in groups),
            subject=str(claims["sub"]),
        )


def _usable_group(value: object) -> bool:
    """A group name dockyard can keep (accounts.names.validate_group_name); others are left out rather
    than refusing the login."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_GROUP_NAME
        and value.isprintable()
        and value == value.strip()
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
