"""registry:2's `auth.token` with `rootcertbundle`: trust tokens an external issuer signed.

As registry:2 does, the signing key is found through the token header: an `x5c` certificate chain
that must lead to a certificate of the bundle, or a `kid` naming a bundle certificate's key (its
libtrust fingerprint, as registry:2 2.x and the issuers written for it use, or its RFC 7638
thumbprint, as distribution 3 does). Issuer and audience must match `issuer` and `service`; `exp` and
`nbf` are checked with registry:2's 60 s leeway. Symmetric algorithms are never accepted: the keys
here are public, and HS256 "signed" with a public key is a known forgery.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from dockyard.auth.interfaces import ANONYMOUS, Principal, PrincipalKind
from dockyard.auth.scopes import AccessSet
from dockyard.auth.tokens import MAX_TOKEN_LENGTH, TokenInvalid, VerifiedToken, libtrust_key_id
from dockyard.errors import ConfigError

log = logging.getLogger("dockyard.auth.external")

ASYMMETRIC_ALGORITHMS = (
    *("ES256", "ES384", "ES512"),
    *("RS256", "RS384", "RS512"),
    *("PS256", "PS384", "PS512"),
    "EdDSA",
)
LEEWAY = 60.0  # registry:2's
MAX_CHAIN = 8
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def load_certificate_bundle(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; ConfigError naming the file when it has none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"auth.token.rootcertbundle: cannot read {path}: {exc.strerror or exc}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ConfigError(f"auth.token.rootcertbundle: no certificate found in {path}")
    return certificates


def rfc7638_thumbprint(key: PublicKey) -> str | None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    elif isinstance(key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        members = {name: jwk[name] for name in ("e", "kty", "n")}
    else:
        return None
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


class ExternalTokenVerifier:
    """Verifies tokens from the issuer registry:2 would trust with the same settings."""

    def __init__(
        self,
        roots: list[x509.Certificate],
        *,
        issuer: str,
        service: str,
        leeway: float = LEEWAY,
    ) -> None:
        self.roots = roots
        self.issuer = issuer
        self.service = service
        self.leeway = leeway
        self.trusted_keys: dict[str, PublicKey] = {}
        for certificate in roots:
            key = certificate.public_key()
            if not isinstance(key, PublicKey):
                continue
            if isinstance(key, ec.EllipticCurvePublicKey):
                self.trusted_keys[libtrust_key_id(key)] = key
            thumbprint = rfc7638_thumbprint(key)
            if thumbprint:
                self.trusted_keys[thumbprint] = key

    @classmethod
    def from_bundle(cls, path: Path, *, issuer: str, service: str) -> ExternalTokenVerifier:
        return cls(load_certificate_bundle(path), issuer=issuer, service=service)

    def verify(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid()
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in ASYMMETRIC_ALGORITHMS:
                raise TokenInvalid()
            key = self._signing_key(header)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["iss", "aud", "exp"]},
            )
        except jwt.PyJWTError as exc:
            log.info("external token refused: %s", exc)
            raise TokenInvalid() from None
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise TokenInvalid()
        principal = Principal(PrincipalKind.USER, subject) if subject else ANONYMOUS
        return VerifiedToken(principal, AccessSet.from_claim(claims.get("access")), float(claims["exp"]))

    def _signing_key(self, header: dict[str, Any]) -> PublicKey:
        chain = header.get("x5c")
        if chain is not None:
            return self._key_from_chain(chain)
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self.trusted_keys:
            return self.trusted_keys[kid]
        log.info("external token names no trusted key (kid %r)", str(kid)[:64])
        raise TokenInvalid()

    def _key_from_chain(self, chain: object) -> PublicKey:
        if not isinstance(chain, list) or not 0 < len(chain) <= MAX_CHAIN:
            raise TokenInvalid()
        try:
            certificates = [
                x509.load_der_x509_certificate(base64.b64decode(item, validate=True)) for item in chain
            ]
        except (ValueError, TypeError):
            raise TokenInvalid() from None
        if not self._chain_reaches_a_root(certificates):
            log.info("external token's x5c chain does not lead to the root bundle")
            raise TokenInvalid()
        key = certificates[0].public_key()
        if not isinstance(key, PublicKey):
            raise TokenInvalid()
        return key

    def _chain_reaches_a_root(self, chain: list[x509.Certificate]) -> bool:
        now = datetime.now(UTC)
        for index, certificate in enumerate(chain):
            if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                return False
            if certificate in self.roots:
                return True
            for root in self.roots:
                if _issued_by(certificate, root):
                    return True
            if index + 1 == len(chain) or not _is_ca(chain[index + 1]):
                return False
            if not _issued_by(certificate, chain[index + 1]):
                return False
        return False


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
