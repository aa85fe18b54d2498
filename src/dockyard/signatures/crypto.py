"""Public keys and signature checks, with the `cryptography` library (loaded when first used).

The schemes are cosign's for key-based signing (sigstore's `signature.LoadVerifier`): ECDSA with
SHA-256 (P-256; P-384 with SHA-384 too), the signature ASN.1 DER-encoded; RSA PKCS#1 v1.5 with SHA-256
(cosign uses PSS only when asked for in code, never for a key file); Ed25519 over the payload itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from dockyard.signatures.interfaces import InvalidTrustedKey

MAX_PEM_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
CERTIFICATE = "x509-certificate"  # a trust-store entry for notation signatures, not a cosign key


@dataclass(frozen=True, slots=True)
class ParsedKey:
    algorithm: str
    fingerprint: str  # sha256:<hex> of the DER SubjectPublicKeyInfo
    pem: str  # normalised: the SubjectPublicKeyInfo PEM


def parse_public_key(pem: str) -> ParsedKey:
    """The key's algorithm, fingerprint and normalised PEM; InvalidTrustedKey saying what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if len(pem.encode()) > MAX_PEM_BYTES:
        raise InvalidTrustedKey(f"the key is over {MAX_PEM_BYTES} bytes")
    if "PRIVATE KEY" in pem:
        raise InvalidTrustedKey("this is a private key: give the public key (cosign.pub)")
    if "BEGIN CERTIFICATE" in pem:
        return _parse_certificate(pem)
    try:
        key: Any = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidTrustedKey(f"not a PEM public key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}
        if key.curve.name not in curves:
            raise InvalidTrustedKey(f"ECDSA curve {key.curve.name} is not supported (P-256, P-384)")
        algorithm = curves[key.curve.name]
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidTrustedKey(
                f"RSA keys of {key.key_size} bits are too small (at least {MIN_RSA_BITS})"
            )
        algorithm = "rsa"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        raise InvalidTrustedKey(f"{type(key).__name__} keys are not supported (ECDSA, RSA, Ed25519)")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    normal = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ParsedKey(algorithm, "sha256:" + hashlib.sha256(der).hexdigest(), normal.decode())


def _parse_certificate(pem: str) -> ParsedKey:
    """A trust-store certificate (notation signatures chain up to it): one PEM certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if pem.count("BEGIN CERTIFICATE") != 1:
        raise InvalidTrustedKey("give one certificate per trust-store entry")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InvalidTrustedKey(f"not a PEM certificate: {exc}") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    normal = cert.public_bytes(serialization.Encoding.PEM).decode()
    return ParsedKey(CERTIFICATE, "sha256:" + hashlib.sha256(der).hexdigest(), normal)


def load_certificate(pem: str) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode())


class Verifier:
    """One loaded public key; `verify` says whether a signature over the payload is good."""

    def __init__(self, pem: str) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key: Any = serialization.load_pem_public_key(pem.encode())

    def verify(self, signature: bytes, payload: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        key = self._key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                digest = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
                key.verify(signature, payload, ec.ECDSA(digest))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, payload)
            else:  # pragma: no cover  (parse_public_key admits no other kind)
                return False
        except (InvalidSignature, ValueError):
            return False
        return True
