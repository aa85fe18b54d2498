"""Browser sessions in a signed cookie, open while their row is (`accounts.sessions`).

The cookie holds who logged in, when it expires, a CSRF token and the session's random key, signed
with HMAC-SHA256 under a secret every node shares. The signature proves only that this server issued
it (a forged cookie costs no query); the session's row, found by the key, says it is still open (logout
deletes it) and which credential opened it, checked with the account itself (each worker remembers
the answer until the change feed announces an account change: `security`): a logout, a disabled user,
a changed password or a revoked personal token ends it at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE_NAME = "dockyard_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    kind: str  # PrincipalKind value
    name: str
    account_id: int | None  # so a deleted account re-created under the same name does not inherit it
    expires_at: int  # unix seconds
    csrf_token: str
    key: str  # names the session's row (by its SHA-256): the server's record that it is open


class SessionCodec:
    def __init__(self, secret: bytes, max_age: int = 8 * 3600) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the session secret must have at least {MIN_SECRET_BYTES} bytes")
        # A key of its own, so the shared secret may serve other purposes without reuse.
        self._key = hmac.new(secret, b"dockyard management session v1", hashlib.sha256).digest()
        self.max_age = max_age

    def issue(
        self, kind: str, name: str, account_id: int | None, now: float | None = None
    ) -> tuple[str, Session]:
        issued = int(now if now is not None else time.time())
        csrf_token, key = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        session = Session(kind, name, account_id, issued + self.max_age, csrf_token, key)
        payload = json.dumps(
            {
                "k": session.kind,
                "n": session.name,
                "i": session.account_id,
                "e": session.expires_at,
                "c": session.csrf_token,
                "s": session.key,
            },
            separators=(",", ":"),
        ).encode()
        body = _b64(payload)
        return f"{body}.{self._sign(body)}", session

    def read(self, value: str, now: float | None = None) -> Session | None:
        """The session, or None when the cookie is forged, damaged or expired."""
        body, _, signature = value.partition(".")
        if not body or not value.isascii() or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            account_id = None if data["i"] is None else int(data["i"])
            session = Session(
                str(data["k"]), str(data["n"]), account_id, int(data["e"]), str(data["c"]), str(data["s"])
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.expires_at <= (now if now is not None else time.time()):
            return None
        return session

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
