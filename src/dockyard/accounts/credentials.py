"""Secrets for personal access tokens and robot accounts, and which credential a login used.

They are 32 random bytes, so a single fast hash (SHA-256) is as safe to store as a slow password
hash and lets a token be checked in microseconds. The prefix tells the authenticator (and secret
scanners) what it is looking at.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

PERSONAL_TOKEN_PREFIX = "dyp_"
ROBOT_SECRET_PREFIX = "dyr_"
CLI_SECRET_PREFIX = "dyc_"  # an OpenID Connect user's password for docker login and the API
HINT_LENGTH = 8  # characters after the prefix kept in clear, to tell tokens apart in lists


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def hint_of(secret: str, prefix: str) -> str:
    return secret[: len(prefix) + HINT_LENGTH]


class CredentialKind(StrEnum):
    PASSWORD = "pw"  # a local user's password
    PERSONAL_TOKEN = "pat"
    ROBOT_SECRET = "rs"
    DIRECTORY = "dir"  # a password the directory (LDAP) checked: dockyard cannot see it change
    OIDC = "oidc"  # a login at the OpenID provider (a portal session)
    CLI_SECRET = "cli"  # an OpenID Connect user's CLI secret


@dataclass(frozen=True, slots=True)
class Credential:
    """Which credential a login used, so what the login hands out (refresh tokens, access tokens,
    sessions) can die with it. `fingerprint` is a digest of the stored hash: a new password or robot
    secret has a new hash, so a different fingerprint. `token_id` names the personal access token."""

    kind: CredentialKind
    fingerprint: str = ""
    token_id: int | None = None

    @property
    def revocable(self) -> bool:
        """dockyard can tell when this credential stops being valid (not so for a directory password)."""
        return self.kind not in (CredentialKind.DIRECTORY, CredentialKind.OIDC)

    def to_claim(self) -> str:
        """`pw:<fp>`, `pat:<id>:<fp>`, `rs:<fp>`, `cli:<fp>`, `dir` or `oidc`: short, no secret in it."""
        if self.kind in (CredentialKind.DIRECTORY, CredentialKind.OIDC):
            return self.kind.value
        if self.kind is CredentialKind.PERSONAL_TOKEN:
            return f"{self.kind.value}:{self.token_id}:{self.fingerprint}"
        return f"{self.kind.value}:{self.fingerprint}"

    @classmethod
    def from_claim(cls, claim: object) -> Credential | None:
        """The credential a claim names, or None when it is malformed."""
        if not isinstance(claim, str) or len(claim) > 100:
            return None
        kind_text, _, rest = claim.partition(":")
        try:
            kind = CredentialKind(kind_text)
        except ValueError:
            return None
        if kind in (CredentialKind.DIRECTORY, CredentialKind.OIDC):
            return cls(kind) if not rest else None
        if kind is CredentialKind.PERSONAL_TOKEN:
            token_id, _, fingerprint = rest.partition(":")
            if not token_id.isascii() or not token_id.isdigit() or len(token_id) > 18:
                return None
            return cls(kind, fingerprint, int(token_id)) if _FINGERPRINT.fullmatch(fingerprint) else None
        return cls(kind, rest) if _FINGERPRINT.fullmatch(rest) else None


_FINGERPRINT = re.compile(r"[A-Za-z0-9_-]{22}")


def same_fingerprint(claimed: str, stored_hash: str) -> bool:
    return hmac.compare_digest(claimed.encode(), fingerprint(stored_hash).encode())


def fingerprint(stored_hash: str) -> str:
    """22 characters (128 bits) of SHA-256 over a stored password or secret hash. It names the hash
    without revealing it: a password hash carries its salt, a secret hash covers 256 random bits."""
    digest = hashlib.sha256(b"dockyard credential fingerprint\0" + stored_hash.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")
