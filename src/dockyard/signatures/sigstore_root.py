"""A Sigstore trust root: sigstore's `trusted_root.json` (protobuf-specs `TrustedRoot`, media type
`application/vnd.dev.sigstore.trustedroot+json;version=0.1`), parsed for offline verification.

It names the certificate authorities (Fulcio: a chain of certificates, leaf-most first, and the window
in which the CA may issue), the transparency logs (Rekor: a public key, its log id and validity window)
and the certificate-transparency logs (their keys, for the SCTs Fulcio embeds). Timestamp authorities
are read but not used: RFC 3161 timestamps are not verified here (a bundle's time comes from Rekor's
signed inclusion promise).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot.v0.2+json",
    }
)
MAX_ROOT_BYTES = 256 * 1024  # the public-good root is ~8 KiB


class InvalidRoot(ValueError):
    """The document is not a trusted root this module can use (the message says why)."""


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime | None
    end: datetime | None

    def covers(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (self.end is None or moment <= self.end)


@dataclass(frozen=True, slots=True)
class LogKey:
    """A transparency log's (or CT log's) key, found by its log id (sha256 of the DER public key)."""

    log_id: bytes
    key: Any  # a cryptography public key
    valid: Window
    base_url: str

    def verify(self, signature: bytes, data: bytes) -> bool:
        return verify_with(self.key, signature, data)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    chain: tuple[x509.Certificate, ...]  # leaf-most (the issuing intermediate) first, root last
    valid: Window
    uri: str


@dataclass(frozen=True, slots=True)
class TrustRoot:
    authorities: tuple[CertificateAuthority, ...]
    tlogs: tuple[LogKey, ...]
    ctlogs: tuple[LogKey, ...]

    def tlog(self, log_id: bytes) -> LogKey | None:
        return next((log for log in self.tlogs if log.log_id == log_id), None)

    def ctlog(self, log_id: bytes) -> LogKey | None:
        return next((log for log in self.ctlogs if log.log_id == log_id), None)


def verify_with(key: Any, signature: bytes, data: bytes) -> bool:
    """A log's or leaf certificate's signature over `data`: ECDSA with the curve's hash (SHA-256 for
    P-256, SHA-384 for P-384), Ed25519, or RSA PKCS#1 v1.5 with SHA-256."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            digest: hashes.HashAlgorithm = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
            if key.curve.key_size == 521:
                digest = hashes.SHA512()
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_trust_root(document: bytes | str) -> TrustRoot:
    """The trust root in `document` (JSON); raises InvalidRoot."""
    if len(document) > MAX_ROOT_BYTES:
        raise InvalidRoot(f"a trusted root is at most {MAX_ROOT_BYTES} bytes")
    try:
        root = json.loads(document)
    except ValueError:
        raise InvalidRoot("not JSON") from None
    if not isinstance(root, dict):
        raise InvalidRoot("not a JSON object")
    if root.get("mediaType") not in MEDIA_TYPES:
        raise InvalidRoot(f"mediaType is not one of {sorted(MEDIA_TYPES)}")
    authorities = tuple(_authority(entry, n) for n, entry in enumerate(_list(root, "certificateAuthorities")))
    tlogs = tuple(_log(entry, f"tlogs[{n}]") for n, entry in enumerate(_list(root, "tlogs")))
    ctlogs = tuple(_log(entry, f"ctlogs[{n}]") for n, entry in enumerate(_list(root, "ctlogs")))
    if not authorities:
        raise InvalidRoot("no certificate authority (certificateAuthorities is empty)")
    if not tlogs:
        raise InvalidRoot("no transparency log (tlogs is empty)")
    return TrustRoot(authorities, tlogs, ctlogs)


def summary(root: TrustRoot) -> dict[str, Any]:
    """What an operator checks after an import: the CAs' subjects, the logs' URLs and windows."""

    def window(valid: Window) -> dict[str, str | None]:
        return {
            "start": valid.start.isoformat() if valid.start else None,
            "end": valid.end.isoformat() if valid.end else None,
        }

    return {
        "certificate_authorities": [
            {"uri": ca.uri, "subject": ca.chain[0].subject.rfc4514_string(), **window(ca.valid)}
            for ca in root.authorities
        ],
        "tlogs": [
            {"url": log.base_url, "log_id": log.log_id.hex(), **window(log.valid)} for log in root.tlogs
        ],
        "ctlogs": [
            {"url": log.base_url, "log_id": log.log_id.hex(), **window(log.valid)} for log in root.ctlogs
        ],
    }


def _list(root: dict[str, Any], name: str) -> list[Any]:
    value = root.get(name, [])
    if not isinstance(value, list):
        raise InvalidRoot(f"{name} is not a list")
    return value


def _authority(entry: Any, n: int) -> CertificateAuthority:
    where = f"certificateAuthorities[{n}]"
    if not isinstance(entry, dict):
        raise InvalidRoot(f"{where} is not an object")
    raw = (entry.get("certChain") or {}).get("certificates")
    if not isinstance(raw, list) or not raw:
        raise InvalidRoot(f"{where}.certChain has no certificates")
    chain = []
    for m, cert in enumerate(raw):
        try:
            chain.append(x509.load_der_x509_certificate(_b64(cert.get("rawBytes"))))
        except (ValueError, AttributeError, TypeError):
            raise InvalidRoot(f"{where}.certChain.certificates[{m}] is not a DER certificate") from None
    return CertificateAuthority(
        tuple(chain), _window(entry.get("validFor"), where), str(entry.get("uri") or "")
    )


def _log(entry: Any, where: str) -> LogKey:
    if not isinstance(entry, dict):
        raise InvalidRoot(f"{where} is not an object")
    public = entry.get("publicKey")
    if not isinstance(public, dict):
        raise InvalidRoot(f"{where}.publicKey is missing")
    try:
        der = _b64(public.get("rawBytes"))
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRoot(f"{where}.publicKey.rawBytes is not a DER public key") from None
    try:
        log_id = _b64((entry.get("logId") or {}).get("keyId"))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRoot(f"{where}.logId.keyId is not base64") from None
    if len(log_id) != 32:
        raise InvalidRoot(f"{where}.logId.keyId is not 32 bytes")
    return LogKey(log_id, key, _window(public.get("validFor"), where), str(entry.get("baseUrl") or ""))


def _window(valid: Any, where: str) -> Window:
    if valid is None:
        return Window(None, None)
    if not isinstance(valid, dict):
        raise InvalidRoot(f"{where}.validFor is not an object")
    return Window(_time(valid.get("start"), where), _time(valid.get("end"), where))


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidRoot(f"{where}.validFor has a time that is not RFC 3339: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return base64.b64decode(value, validate=True)
