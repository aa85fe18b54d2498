"""Endpoint credentials sealed at rest, under a key that is not in the database.

The key is derived (HKDF-SHA256, with a purpose label of its own) from the same passphrase the token
signing keys are encrypted under: `http.secret`, or the generated `<datadir>/signing-key-secret`. So a
copy of the database (a backup, a dump, a stolen file) does not reveal upstream passwords, and every node
sharing http.secret can read what another sealed. Each secret is AES-GCM encrypted with the endpoint's
name as associated data: a sealed value copied onto another endpoint's row does not open.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# The label keeps this key apart from any other derived from the same passphrase.
PURPOSE = b"dockyard registry endpoint credentials v1"
VERSION = "v1"


def derive_key(passphrase: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(passphrase)


class SecretBox:
    """Seals with the current passphrase; opens with it or an older one (before http.secret was set,
    the datadir's secret)."""

    def __init__(self, passphrase: bytes, older: Sequence[bytes | None] = ()) -> None:
        self._seal_key = AESGCM(derive_key(passphrase))
        self._open_keys = [self._seal_key, *(AESGCM(derive_key(p)) for p in older if p)]

    def seal(self, name: str, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = self._seal_key.encrypt(nonce, secret.encode(), name.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, name: str, sealed: str) -> str | None:
        """The secret, or None when no key this node knows opens it (another http.secret)."""
        version, _, payload = sealed.partition(":")
        if version != VERSION:
            return None
        try:
            raw = base64.b64decode(payload, validate=True)
        except ValueError:
            return None
        for key in self._open_keys:
            try:
                return key.decrypt(raw[:12], raw[12:], name.encode()).decode()
            except (InvalidTag, ValueError):
                continue
        return None
