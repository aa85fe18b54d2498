"""How the token signing keys are kept in the database: PKCS#8 PEM, the private key encrypted under a
passphrase that is not in the database (http.secret, or a secret generated in the data directory), so
a copy of the database (a backup, a dump, a stolen file) cannot sign tokens.

Keys stored before encryption was the default are in the clear; keys may also be under an older
passphrase (the data directory's secret, before http.secret was set). `encrypt_at_rest` moves both to
the current passphrase; until then `open_key` reads them with the older ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update

from dockyard.auth.models import SigningKey
from dockyard.db.session import Database

log = logging.getLogger("dockyard.auth.keys")


def seal(private_key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> str:
    """The stored form: encrypted PKCS#8 PEM (in the clear only without a passphrase)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def open_key(pem: str, passphrases: Sequence[bytes | None]) -> ec.EllipticCurvePrivateKey | None:
    """The EC private key in `pem`, opened with the first of `passphrases` that fits (None: in the
    clear); None when none does."""
    for passphrase in passphrases:
        try:
            key = serialization.load_pem_private_key(pem.encode(), passphrase or None)
        except (ValueError, TypeError):  # wrong passphrase, or one given for a key in the clear, or none
            continue
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    return None


def public_key(pem: str) -> ec.EllipticCurvePublicKey | None:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def encrypt_at_rest(db: Database, passphrase: bytes, older: Sequence[bytes | None]) -> int:
    """Rewrite every stored private key (retired ones too) that is in the clear or under an `older`
    passphrase, encrypted under `passphrase`. Returns how many were. Run at start, before the workers."""
    with db.read() as connection:
        rows = connection.execute(select(SigningKey.kid, SigningKey.private_key)).all()
    rewritten = 0
    for kid, pem in rows:
        if open_key(pem, [passphrase]) is not None:
            continue
        private_key = open_key(pem, older)
        if private_key is None:
            continue  # under a secret this node does not know: left as it is
        with db.write() as connection:
            result = connection.execute(
                update(SigningKey)
                .where(SigningKey.kid == kid, SigningKey.private_key == pem)
                .values(private_key=seal(private_key, passphrase))
            )
        rewritten += result.rowcount
    if rewritten:
        log.info("encrypted %d token signing keys at rest", rewritten)
    return rewritten
