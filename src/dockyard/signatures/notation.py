"""Notary Project (notation) signatures: JWS envelopes verified against a project's X.509 trust store.

Formats (notaryproject/specifications specs/signature-specification.md, signature-envelope-jws.md):
a referrer of the artifact with artifactType `application/vnd.cncf.notary.signature` whose layer of
media type `application/jose+json` is a flattened JWS JSON envelope: `payload` (base64url of
`{"targetArtifact": {descriptor}}`), `protected` (base64url headers: `alg`, `cty`, `crit`,
`io.cncf.notary.signingScheme`, ...), `header.x5c` (the signing certificate first, then its chain,
base64 DER) and `signature` (base64url, over `ASCII(protected "." payload)`).

What is checked: the envelope's shape; `cty`; `crit` lists `io.cncf.notary.signingScheme` and nothing
this code does not understand; the scheme is `notary.x509` (`notary.x509.signingAuthority` needs a
timestamp authority's countersignature, which is not checked here, so it is refused); `alg` is the one
the signing certificate's key calls for (ES256/384/512 for P-256/384/521, PS256/384/512 for RSA
2048/3072/4096); the signature verifies with that key; the chain in `x5c` is each certificate issued
by the next, every issuer a CA, every certificate within its validity, and ends at (or is issued by) a
certificate of the project's trust store; the signing certificate, if it names extended key usages,
names code signing; `io.cncf.notary.expiry` has not passed; the payload's
`targetArtifact.digest` is the artifact's. A project's trust policy (trust_policy.py) narrows which
stores and signers are trusted for a repository and which checks are enforced or only logged; without
one every check is enforced and any certificate of the store vouches, as notation's strict level.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard.signatures.trust_policy import TrustPolicy, identity_trusted

NOTATION_ARTIFACT = "application/vnd.cncf.notary.signature"
JWS_ENVELOPE = "application/jose+json"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_SCHEME = "io.cncf.notary.signingScheme"
EXPIRY = "io.cncf.notary.expiry"
UNDERSTOOD_CRITICAL = frozenset({SIGNING_SCHEME, EXPIRY, "io.cncf.notary.authenticSigningTime"})
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_CHAIN = 10


def _b64url(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass(frozen=True)
class Anchor:
    """A certificate of the project's trust store: its key name and the named store it is in."""

    name: str
    certificate: Any
    store: str


def verify_envelope(
    envelope: bytes,
    digest: str,
    anchors: list[Anchor],
    now: datetime | None = None,
    policy: TrustPolicy | None = None,
) -> str | tuple[str, ...]:
    """(name of the trust-store certificate that vouches for the signer ("" when authenticity is only
    logged and failed), notes on checks that failed but are logged) or why the envelope fails.

    Without a trust policy: every check enforced, any certificate of the store vouches for any signer,
    no revocation check (as before trust policies). With one (trust_policy.py): its stores, identities
    and level."""
    now = now or datetime.now(UTC)
    parsed = _integrity(envelope, digest)
    if isinstance(parsed, str):
        return parsed
    protected, chain = parsed
    action = policy.action if policy is not None else _STRICT_WITHOUT_REVOCATION.__getitem__
    notes: list[str] = []
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("authenticity", lambda: _authenticity(chain, anchors, policy)),
        ("authenticTimestamp", lambda: _validity(chain, now)),
        ("expiry", lambda: _expiry(protected, now)),
        ("revocation", lambda: _revocation(chain)),
    ]
    for check, run in checks:
        if action(check) == "skip":
            continue
        problem = run()
        if problem is None:
            continue
        if action(check) == "enforce":
            return problem
        notes.append(f"{check} logged: {problem}")
    anchor = _anchor(chain[-1], _allowed(anchors, policy))
    return (anchor or "", *notes)


_STRICT_WITHOUT_REVOCATION = {
    "authenticity": "enforce",
    "authenticTimestamp": "enforce",
    "expiry": "enforce",
    "revocation": "skip",
}


def _integrity(envelope: bytes, digest: str) -> str | tuple[dict[str, Any], list[Any]]:
    """The envelope parses, is a notary.x509 JWS this code understands, its signature verifies with the
    signing certificate's key, and it names this artifact: (protected headers, certificate chain)."""
    from cryptography import x509

    if len(envelope) > MAX_ENVELOPE_BYTES:
        return "the JWS envelope is too large"
    try:
        document = json.loads(envelope)
        protected_b64, payload_b64 = document["protected"], document["payload"]
        protected = json.loads(_b64url(protected_b64))
        payload = json.loads(_b64url(payload_b64))
        signature = _b64url(document["signature"])
        chain_b64 = document["header"]["x5c"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return "not a JWS JSON envelope (payload, protected, header.x5c, signature)"
    if not isinstance(protected, dict) or not isinstance(payload, dict):
        return "the JWS headers or payload are not JSON objects"
    if protected.get("cty") != PAYLOAD_TYPE:
        return f"the JWS cty is not {PAYLOAD_TYPE}"
    critical = protected.get("crit")
    if not isinstance(critical, list) or SIGNING_SCHEME not in critical:
        return f"the JWS crit header does not list {SIGNING_SCHEME}"
    unknown = [name for name in critical if name not in UNDERSTOOD_CRITICAL]
    if unknown:
        return f"critical headers not understood: {unknown}"
    if protected.get(SIGNING_SCHEME) != "notary.x509":
        return f"signing scheme {protected.get(SIGNING_SCHEME)!r} is not supported (notary.x509)"
    if not isinstance(chain_b64, list) or not 1 <= len(chain_b64) <= MAX_CHAIN:
        return "header.x5c is not a certificate chain"
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain_b64]
    except (ValueError, TypeError, binascii.Error):
        return "header.x5c holds something that is not a DER certificate"
    leaf = chain[0]
    expected = _alg(leaf.public_key())
    if expected is None:
        return "the signing certificate's key is not one notation signs with"
    if protected.get("alg") != expected:
        return f"alg {protected.get('alg')!r} does not match the signing key ({expected})"
    if not _verify(leaf.public_key(), expected, signature, f"{protected_b64}.{payload_b64}".encode()):
        return "the JWS signature does not verify with the signing certificate's key"
    target = payload.get("targetArtifact")
    claim = target.get("digest") if isinstance(target, dict) else None
    if not isinstance(claim, str):
        return "the payload has no targetArtifact.digest"
    if claim != digest:
        return f"the payload names {claim}, not this artifact"
    return protected, chain


def _authenticity(chain: list[Any], anchors: list[Anchor], policy: TrustPolicy | None) -> str | None:
    why = _chain_problem(chain)
    if why:
        return why
    allowed = _allowed(anchors, policy)
    if _anchor(chain[-1], allowed) is None:
        if policy is None:
            return "the certificate chain does not lead to a certificate of the project's trust store"
        stores = ", ".join(f"ca:{store}" for store in policy.stores)
        return (
            f"the certificate chain does not lead to a certificate of {stores} (trust policy {policy.name!r})"
        )
    if policy is not None and not identity_trusted(policy, chain[0]):
        subject = chain[0].subject.rfc4514_string()
        return f"the signer {subject} is not a trusted identity of trust policy {policy.name!r}"
    return None


def _allowed(anchors: list[Anchor], policy: TrustPolicy | None) -> list[Anchor]:
    return anchors if policy is None else [a for a in anchors if a.store in policy.stores]


def _validity(chain: list[Any], now: datetime) -> str | None:
    """Without a timestamp countersignature, the chain must be valid at verification time."""
    for index, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"certificate {index} of the chain ({cert.subject.rfc4514_string()}) is not valid now"
    return None


def _expiry(protected: dict[str, Any], now: datetime) -> str | None:
    if EXPIRY not in protected:
        return None
    try:
        expiry = datetime.fromisoformat(str(protected[EXPIRY]).replace("Z", "+00:00"))
    except ValueError:
        return "the expiry is not an RFC 3339 time"
    if expiry.tzinfo is None or expiry <= now:
        return f"the signature expired at {protected[EXPIRY]}"
    return None


def _revocation(chain: list[Any]) -> str | None:
    """dockyard fetches no CRL or OCSP answer (it works offline): a certificate that names neither is
    not revoked (the spec's rule); one that names either has a status dockyard cannot determine."""
    from cryptography import x509

    for index, cert in enumerate(chain):
        for extension in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
            try:
                value = cert.extensions.get_extension_for_class(extension).value
            except x509.ExtensionNotFound:
                continue
            if extension is x509.AuthorityInformationAccess and not any(
                d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in value
            ):
                continue
            return (
                f"certificate {index} of the chain names a CRL or OCSP responder: its revocation status "
                "is unknown (dockyard does not fetch them)"
            )
    return None


def _alg(key: Any) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
    if isinstance(key, rsa.RSAPublicKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}.get(key.key_size)
    return None


def _verify(key: Any, alg: str, signature: bytes, signed: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    try:
        if alg.startswith("ES"):
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:  # JWS: r and s, fixed length, not DER
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(digest))
        else:
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signed, pss, digest)
    except (InvalidSignature, ValueError):
        return False
    return True


def _chain_problem(chain: list[Any]) -> str | None:
    """Each certificate issued by the next, every issuer a CA, the signer's key usage code signing."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    for index, cert in enumerate(chain):
        if index + 1 < len(chain):
            issuer = chain[index + 1]
            if not _is_ca(issuer):
                return f"certificate {index + 1} of the chain is not a CA"
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                return f"certificate {index} of the chain is not issued by the next one"
    try:
        usages = chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if x509.oid.ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        return "the signing certificate is not for code signing (extended key usage)"
    return None


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _anchor(last: Any, anchors: list[Anchor]) -> str | None:
    """The trust-store certificate that is `last` itself, or its (CA) issuer."""
    from cryptography.exceptions import InvalidSignature

    for anchor in anchors:
        if anchor.certificate == last:
            return anchor.name
    for anchor in anchors:
        if not _is_ca(anchor.certificate) or anchor.certificate.subject != last.issuer:
            continue
        try:
            last.verify_directly_issued_by(anchor.certificate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return anchor.name
    return None
