"""Offline verification of a Sigstore bundle (cosign keyless) for an artifact digest.

A bundle (protobuf-specs `Bundle`, JSON; media types below) holds a signature (a DSSE envelope with an
in-toto statement, or a message signature over a digest), the Fulcio leaf certificate (v0.3) or chain
(v0.1, v0.2) and a Rekor entry. It verifies for `digest` against a trust root and identity policies
when, in the order of sigstore-python's verifier (`sigstore/verify/verifier.py`):

1. the Rekor entry's inclusion promise verifies with a log key of the trust root, which makes its
   integratedTime the signing time; its inclusion proof and checkpoint verify too (a v0.1 bundle
   may lack them);
2. the leaf chains to a certificate authority of the trust root valid at that time (RFC 5280 path
   validation by `cryptography`, every certificate valid at that time), has the digitalSignature key
   usage and the codeSigning extended key usage;
3. the leaf's embedded SCT verifies with a CT log key of the trust root (over the precertificate);
4. an identity policy matches the leaf: a SAN (exact, or a regular expression as cosign's
   `--certificate-identity-regexp`) and the OIDC issuer (Fulcio's extensions 1.3.6.1.4.1.57264.1.8,
   or the older 1.3.6.1.4.1.57264.1.1);
5. the signature verifies with the leaf's key, and the Rekor body names this signature and leaf;
6. the signed content is bound to `digest`: the message digest equals it, or the in-toto statement
   has it as a subject (and, when asked, a given predicate type).

Not done: RFC 3161 timestamps (a bundle whose only time is a TSA's is refused), Rekor v2 entries
(hashedrekord/dsse 0.0.2, checkpoint-only), public-key (non-keyless) bundles.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from dockyard.signatures import sigstore_log
from dockyard.signatures.interfaces import Identity
from dockyard.signatures.sigstore_log import LoggedAt, LogProblem
from dockyard.signatures.sigstore_root import TrustRoot, verify_with

BUNDLE_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)
# cosign's `--new-bundle-format` referrer (sigstore/cosign specs/BUNDLE_SPEC.md) and what `cosign sign`
# puts in the DSSE statement (cosign pkg/types/predicate.go).
BUNDLE_ARTIFACT = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
MAX_BUNDLE_BYTES = 1024 * 1024


class BundleProblem(ValueError):
    """Why the bundle does not verify (the message is shown in the verdict)."""


@dataclass(frozen=True, slots=True)
class Verified:
    identity: str  # the name of the identity policy that matched
    san: str  # the leaf's SAN that matched
    issuer: str
    logged: LoggedAt


def verify_bundle(
    document: bytes,
    digest: str,
    root: TrustRoot,
    identities: Iterable[Identity],
    predicate_types: frozenset[str] | None = frozenset({COSIGN_SIGN_PREDICATE}),
) -> Verified:
    """Verify the bundle `document` as a signature of `digest` ("sha256:<hex>"); raises BundleProblem.
    `predicate_types`: the in-toto predicate types a DSSE statement may have (None: any)."""
    try:
        return _verify(document, digest, root, identities, predicate_types)
    except BundleProblem:
        raise
    except LogProblem as exc:
        raise BundleProblem(str(exc)) from None
    except (AttributeError, TypeError, KeyError, ValueError) as exc:  # a field of the wrong JSON type
        raise BundleProblem(f"the bundle is malformed ({type(exc).__name__}: {exc})") from None


def _verify(
    document: bytes,
    digest: str,
    root: TrustRoot,
    identities: Iterable[Identity],
    predicate_types: frozenset[str] | None,
) -> Verified:
    algorithm, _, digest_hex = digest.partition(":")
    if algorithm != "sha256" or len(digest_hex) != 64:
        raise BundleProblem(f"only sha256 digests are bound by bundles, not {digest}")
    bundle = _json(document, "the bundle")
    if bundle.get("mediaType") not in BUNDLE_TYPES:
        raise BundleProblem(f"not a Sigstore bundle (mediaType {bundle.get('mediaType')!r})")
    material = bundle.get("verificationMaterial")
    if not isinstance(material, dict):
        raise BundleProblem("the bundle has no verificationMaterial")
    leaf, given_chain = _certificates(material)
    entries = material.get("tlogEntries")
    if not isinstance(entries, list) or len(entries) != 1:
        raise BundleProblem("a bundle must hold exactly one transparency log entry")
    v01 = bundle["mediaType"] == "application/vnd.dev.sigstore.bundle+json;version=0.1"
    logged, body = sigstore_log.check_entry(entries[0], root, proof_required=not v01)
    issuer_cert = _check_chain(leaf, given_chain, root, logged)
    _check_sct(leaf, issuer_cert, root)
    sans, issuer = _identity_of(leaf)
    identity = next((i for i in identities if i.matches(sans, issuer)), None)
    if identity is None:
        named = ", ".join(sans) or "none"
        raise BundleProblem(f"no identity policy matches the signer (SAN {named}, issuer {issuer or 'none'})")
    if "dsseEnvelope" in bundle:
        _check_dsse(bundle["dsseEnvelope"], body, leaf, digest_hex, predicate_types)
    elif "messageSignature" in bundle:
        _check_message(bundle["messageSignature"], body, leaf, digest_hex)
    else:
        raise BundleProblem("the bundle holds neither a DSSE envelope nor a message signature")
    san = next(s for s in sans if identity.matches([s], issuer))
    return Verified(identity.name, san, issuer or "", logged)


def _json(document: bytes | str, what: str) -> dict[str, Any]:
    if len(document) > MAX_BUNDLE_BYTES:
        raise BundleProblem(f"{what} is over {MAX_BUNDLE_BYTES} bytes")
    try:
        parsed = json.loads(document)
    except ValueError:
        raise BundleProblem(f"{what} is not JSON") from None
    if not isinstance(parsed, dict):
        raise BundleProblem(f"{what} is not a JSON object")
    return parsed


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleProblem(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise BundleProblem(f"{what} is not base64") from None


def _certificates(material: dict[str, Any]) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The leaf and the rest of the chain the bundle carries (v0.1/v0.2 carry a chain)."""
    if "certificate" in material:
        raw = [(material["certificate"] or {}).get("rawBytes")]
    elif "x509CertificateChain" in material:
        raw = [
            c.get("rawBytes") if isinstance(c, dict) else None
            for c in (material["x509CertificateChain"] or {}).get("certificates") or []
        ]
    else:
        raise BundleProblem("the bundle has no certificate (a public-key bundle is not keyless)")
    if not raw:
        raise BundleProblem("the bundle's certificate chain is empty")
    certs = []
    for n, value in enumerate(raw):
        try:
            certs.append(x509.load_der_x509_certificate(_b64(value, f"certificate {n}")))
        except ValueError as exc:
            if isinstance(exc, BundleProblem):
                raise
            raise BundleProblem(f"certificate {n} of the bundle is not DER") from None
    return certs[0], certs[1:]


def _check_chain(
    leaf: x509.Certificate, given: list[x509.Certificate], root: TrustRoot, logged: LoggedAt
) -> x509.Certificate:
    """The certificate that issued the leaf, after path validation at the signing time against each
    CA of the trust root whose window covers it (the chain the bundle carries is only a hint)."""
    # Fulcio leaves carry codeSigning, not the clientAuth a client verifier asks for by default.
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    problems = []
    for authority in root.authorities:
        if not authority.valid.covers(logged.time):
            problems.append(
                f"CA {authority.uri or authority.chain[0].subject.rfc4514_string()} "
                f"was not valid at {logged.time.isoformat()}"
            )
            continue
        verifier = (
            PolicyBuilder()
            .store(Store(list(authority.chain)))
            .time(logged.time)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(leaf, given).chain
        except (VerificationError, ValueError) as exc:
            problems.append(f"the certificate does not chain to {authority.uri or 'a CA'}: {exc}")
            continue
        _check_usage(leaf)
        return chain[1]
    if not problems:
        problems.append("the trust root has no certificate authority")
    raise BundleProblem("; ".join(problems))


def _check_usage(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise BundleProblem("the certificate lacks key usage or extended key usage") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise BundleProblem("the certificate is not for code signing")


def _check_sct(leaf: x509.Certificate, issuer: x509.Certificate, root: TrustRoot) -> None:
    """Fulcio embeds one SCT: the CT log's signature over the precertificate (RFC 6962 3.2)."""
    try:
        scts = list(
            leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        )
    except x509.ExtensionNotFound:
        raise BundleProblem(
            "the certificate has no SCT (it was not logged to certificate transparency)"
        ) from None
    if not scts:
        raise BundleProblem("the certificate has no SCT")
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    tbs = leaf.tbs_precertificate_bytes
    for sct in scts:
        log = root.ctlog(sct.log_id)
        if log is None or not log.valid.covers(_aware(sct.timestamp)):
            continue
        if not isinstance(sct.signature_hash_algorithm, hashes.SHA256):
            continue
        milliseconds = int(_aware(sct.timestamp).timestamp() * 1000)
        signed = (
            bytes([sct.version.value, 0])
            + milliseconds.to_bytes(8, "big")
            + (1).to_bytes(2, "big")  # precert_entry
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + len(sct.extension_bytes).to_bytes(2, "big")
            + sct.extension_bytes
        )
        if verify_with(log.key, sct.signature, signed):
            return
    raise BundleProblem("no SCT of the certificate verifies with a CT log key of the trust root")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _identity_of(leaf: x509.Certificate) -> tuple[list[str], str | None]:
    """The leaf's SANs (email, URI, other names as text) and its OIDC issuer."""
    sans: list[str] = []
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    if names is not None:
        sans += names.get_values_for_type(x509.RFC822Name)
        sans += names.get_values_for_type(x509.UniformResourceIdentifier)
        for other in names.get_values_for_type(x509.OtherName):
            text = _der_string(other.value)
            if text is not None:
                sans.append(text)
    issuer = None
    for oid, der in ((ISSUER_V2, True), (ISSUER_V1, False)):
        try:
            raw = leaf.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        value = raw.value if isinstance(raw, x509.UnrecognizedExtension) else None
        if value is None:
            continue
        issuer = _der_string(value) if der else value.decode("utf-8", "replace")
        break
    return sans, issuer


def _der_string(value: bytes) -> str | None:
    """The text of a DER UTF8String (tag 12) of short or long form length."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, start = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    text = value[start : start + length]
    return text.decode("utf-8", "replace") if len(text) == length else None


def _check_message(signed: Any, body: dict[str, Any], leaf: x509.Certificate, digest_hex: str) -> None:
    """A message signature is over the SHA-256 digest whatever the curve (sigstore-python signs with
    P-384 keys so)."""
    if not isinstance(signed, dict):
        raise BundleProblem("messageSignature is not an object")
    message_digest = signed.get("messageDigest") or {}
    if message_digest.get("algorithm") != "SHA2_256":
        raise BundleProblem("the message digest is not SHA2_256")
    claimed = _b64(message_digest.get("digest"), "the message digest").hex()
    if claimed != digest_hex:
        raise BundleProblem(f"the bundle signs sha256:{claimed}, not this artifact")
    signature = _b64(signed.get("signature"), "the message signature")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BundleProblem("only ECDSA leaves sign message digests here")
    try:
        key.verify(signature, bytes.fromhex(digest_hex), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise BundleProblem("the message signature does not verify with the certificate's key") from None
    if body.get("kind") != "hashedrekord":
        raise BundleProblem("a message signature's log entry must be a hashedrekord")
    sigstore_log.check_hashedrekord(body, digest_hex, signature, leaf)


def _check_dsse(
    envelope: Any,
    body: dict[str, Any],
    leaf: x509.Certificate,
    digest_hex: str,
    predicate_types: frozenset[str] | None,
) -> None:
    if not isinstance(envelope, dict):
        raise BundleProblem("dsseEnvelope is not an object")
    payload = _b64(envelope.get("payload"), "the DSSE payload")
    payload_type = envelope.get("payloadType")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise BundleProblem("a DSSE envelope must hold exactly one signature")
    signature = _b64(signatures[0].get("sig"), "the DSSE signature")
    if payload_type != IN_TOTO or not isinstance(payload_type, str):
        raise BundleProblem(f"the DSSE payload type is {payload_type!r}, not {IN_TOTO}")
    encoded_type = payload_type.encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(encoded_type), encoded_type, len(payload), payload)
    if not verify_with(leaf.public_key(), signature, pae):
        raise BundleProblem("the DSSE signature does not verify with the certificate's key")
    if body.get("kind") != "dsse":
        raise BundleProblem("a DSSE envelope's log entry must be a dsse entry")
    sigstore_log.check_dsse(body, payload, [signature], leaf)
    statement = _json(payload, "the in-toto statement")
    if statement.get("_type") not in STATEMENT_TYPES:
        raise BundleProblem("the DSSE payload is not an in-toto statement")
    if predicate_types is not None and statement.get("predicateType") not in predicate_types:
        raise BundleProblem(
            f"the statement's predicate type {statement.get('predicateType')!r} is not a signature's "
            f"({', '.join(sorted(predicate_types))})"
        )
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        raise BundleProblem("the in-toto statement has no subjects")
    named = [
        s.get("digest", {}).get("sha256")
        for s in subjects
        if isinstance(s, dict) and isinstance(s.get("digest"), dict)
    ]
    if digest_hex not in named:
        raise BundleProblem("the in-toto statement's subjects do not include this artifact's digest")
