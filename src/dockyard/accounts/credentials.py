"""Secrets for personal access tokens and robot accounts.

They are 32 random bytes, so a single fast hash (SHA-256) is as safe to store as a slow password
hash and lets a token be checked in microseconds. The prefix tells the authenticator (and secret
scanners) what it is looking at.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PERSONAL_TOKEN_PREFIX = "dyp_"
ROBOT_SECRET_PREFIX = "dyr_"
HINT_LENGTH = 8  # characters after the prefix kept in clear, to tell tokens apart in lists


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def hint_of(secret: str, prefix: str) -> str:
    return secret[: len(prefix) + HINT_LENGTH]
