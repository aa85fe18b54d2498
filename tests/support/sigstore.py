"""A private Sigstore made in the test: a "Fulcio" CA (root and intermediate), a CT log that signs the
SCT embedded in each leaf (RFC 6962 precertificate SCT), a "Rekor" that signs the inclusion promise
(SET) and a checkpoint over a small Merkle tree, and the `trusted_root.json` naming them. Bundles are
made in sigstore's formats (protobuf-specs Bundle v0.3 JSON, cosign's `--new-bundle-format` DSSE
statement with predicate https://sigstore.dev/cosign/sign/v1), signed by a leaf whose SAN and OIDC
issuer (Fulcio's extension 1.3.6.1.4.1.57264.1.8) are chosen by the test."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _ca(
    name: str, key: Any, issuer: tuple[x509.Certificate, Any] | None, start: datetime
) -> x509.Certificate:
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test"), x509.NameAttribute(NameOID.COMMON_NAME, name)]
    )
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    )
    return builder.sign(signer_key, hashes.SHA256())


@dataclass
class PrivateSigstore:
    """One CA, one CT log, one Rekor. `trusted_root()` is what an operator would import."""

    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=1))
    root_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    intermediate_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    ct_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    rekor_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    log_size: int = 0

    def __post_init__(self) -> None:
        self.root = _ca("test-fulcio-root", self.root_key, None, self.start)
        self.intermediate = _ca(
            "test-fulcio-intermediate", self.intermediate_key, (self.root, self.root_key), self.start
        )
        self.leaves: list[bytes] = []  # Rekor's log: leaf hashes

    @property
    def rekor_id(self) -> bytes:
        return hashlib.sha256(_spki(self.rekor_key.public_key())).digest()

    @property
    def ct_id(self) -> bytes:
        return hashlib.sha256(_spki(self.ct_key.public_key())).digest()

    def trusted_root(self, *, ca: bool = True, ct: bool = True, ca_end: datetime | None = None) -> bytes:
        valid_for = {"start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ")}
        authority: dict[str, Any] = {
            "subject": {"organization": "test", "commonName": "test-fulcio"},
            "uri": "https://fulcio.test",
            "certChain": {
                "certificates": [
                    {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                    for c in (self.intermediate, self.root)
                ]
            },
            "validFor": {**valid_for, **({"end": ca_end.strftime("%Y-%m-%dT%H:%M:%SZ")} if ca_end else {})},
        }
        other = PrivateSigstore(start=self.start)

        def log(url: str, key: Any) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_spki(key.public_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid_for,
                },
                "logId": {"keyId": _b64(hashlib.sha256(_spki(key.public_key())).digest())},
            }

        return json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [log("https://rekor.test", self.rekor_key)],
                "certificateAuthorities": [authority]
                if ca
                else [
                    {
                        **authority,
                        "certChain": {
                            "certificates": [
                                {"rawBytes": _b64(other.root.public_bytes(serialization.Encoding.DER))}
                            ]
                        },
                    }
                ],
                "ctlogs": [log("https://ctfe.test", self.ct_key if ct else other.ct_key)],
            }
        ).encode()

    # --- Fulcio ---------------------------------------------------------------------------------
    def leaf(self, key: Any, san: str, issuer: str, when: datetime) -> x509.Certificate:
        def build(sct_list: bytes) -> x509.CertificateBuilder:
            return (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.intermediate.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(when - timedelta(seconds=5))
                .not_valid_after(when + timedelta(minutes=10))
                .add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                    critical=False,
                )
                .add_extension(
                    x509.SubjectAlternativeName(
                        [x509.UniformResourceIdentifier(san) if "://" in san else x509.RFC822Name(san)]
                    ),
                    critical=True,
                )
                .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _der_utf8(issuer)), critical=False)
                .add_extension(x509.UnrecognizedExtension(SCT_LIST, sct_list), critical=False)
            )

        serial = x509.random_serial_number()
        placeholder = build(self._sct_extension(b"\x00" * 70, when)).sign(
            self.intermediate_key, hashes.SHA384()
        )
        tbs = placeholder.tbs_precertificate_bytes
        issuer_key_hash = hashlib.sha256(_spki(self.intermediate_key.public_key())).digest()
        millis = int(when.timestamp() * 1000)
        signed = (
            bytes([0, 0])
            + millis.to_bytes(8, "big")
            + (1).to_bytes(2, "big")
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + (0).to_bytes(2, "big")
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return build(self._sct_extension(signature, when)).sign(self.intermediate_key, hashes.SHA384())

    def _sct_extension(self, signature: bytes, when: datetime) -> bytes:
        sct = (
            b"\x00"
            + self.ct_id
            + int(when.timestamp() * 1000).to_bytes(8, "big")
            + b"\x00\x00"
            + bytes([4, 3])
            + len(signature).to_bytes(2, "big")
            + signature
        )
        listed = len(sct).to_bytes(2, "big") + sct
        tls = len(listed).to_bytes(2, "big") + listed
        return bytes([0x04, len(tls)]) + tls if len(tls) < 128 else bytes([0x04, 0x81, len(tls)]) + tls

    # --- Rekor ----------------------------------------------------------------------------------
    def log_entry(self, body: dict[str, Any], when: datetime, *, key: Any = None) -> dict[str, Any]:
        """A tlog entry (Rekor v1) for `body`, with a SET by `key` (default: this Rekor's) and an
        inclusion proof in a tree of a few entries, with its checkpoint."""
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        body_b64 = _b64(canonical)
        # Two unrelated entries before it, so the proof has a real path.
        self.leaves += [hashlib.sha256(b"\x00other%d" % len(self.leaves)).digest() for _ in range(2)]
        index = len(self.leaves)
        self.leaves.append(hashlib.sha256(b"\x00" + canonical).digest())
        size = len(self.leaves)
        integrated = int(when.timestamp())
        signer = key or self.rekor_key
        promise = json.dumps(
            {"body": body_b64, "integratedTime": integrated, "logID": self.rekor_id.hex(), "logIndex": index},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        root_hash = _tree_hash(self.leaves)
        note = f"rekor.test - 1\n{size}\n{_b64(root_hash)}\n"
        note_signature = self.rekor_id[:4] + signer.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.rekor_id)},
            "kindVersion": {"kind": body["kind"], "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {
                "signedEntryTimestamp": _b64(signer.sign(promise, ec.ECDSA(hashes.SHA256())))
            },
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root_hash),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in _path(self.leaves, index)],
                "checkpoint": {"envelope": f"{note}\n\u2014 rekor.test {_b64(note_signature)}\n"},
            },
            "canonicalizedBody": body_b64,
        }

    # --- cosign ---------------------------------------------------------------------------------
    def sign_image(
        self,
        digest: str,
        san: str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
        issuer: str = "https://token.actions.githubusercontent.com",
        *,
        predicate_type: str = "https://sigstore.dev/cosign/sign/v1",
        rekor_key: Any = None,
    ) -> bytes:
        """A bundle as `cosign sign --new-bundle-format` makes it: a DSSE envelope of an in-toto
        statement whose subject is the image's digest, logged as a dsse entry."""
        when = datetime.now(UTC) - timedelta(minutes=1)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self.leaf(key, san, issuer, when)
        algorithm, _, hex_digest = digest.partition(":")
        statement = json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "registry.test/app", "digest": {algorithm: hex_digest}}],
                "predicateType": predicate_type,
                "predicate": {},
            }
        ).encode()
        payload_type = b"application/vnd.in-toto+json"
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(statement), statement)
        signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
        pem = leaf.public_bytes(serialization.Encoding.PEM)
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()},
                "signatures": [{"signature": _b64(signature), "verifier": _b64(pem)}],
            },
        }
        return json.dumps(
            {
                "mediaType": BUNDLE_TYPE,
                "verificationMaterial": {
                    "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
                    "tlogEntries": [self.log_entry(body, when, key=rekor_key)],
                },
                "dsseEnvelope": {
                    "payload": _b64(statement),
                    "payloadType": payload_type.decode(),
                    "signatures": [{"sig": _b64(signature), "keyid": ""}],
                },
            }
        ).encode()


def _children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below n (RFC 6962 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _tree_hash(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _children(_tree_hash(leaves[:k]), _tree_hash(leaves[k:]))


def _path(leaves: list[bytes], index: int) -> list[bytes]:
    """RFC 6962 2.1.1 audit path, leaf-most first."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(leaves[:k], index), _tree_hash(leaves[k:])]
    return [*_path(leaves[k:], index - k), _tree_hash(leaves[:k])]
