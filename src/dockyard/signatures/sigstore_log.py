"""A Sigstore bundle's Rekor (v1) entry, checked offline against the trust root's log keys.

- The inclusion promise (SET): the log's signature over the canonical JSON of {body, integratedTime,
  logID, logIndex} (rekor `pkg/types/entries`, what sigstore-python and cosign verify). It is what makes
  `integratedTime` trustworthy: the signing time that the certificate chain is checked at.
- The inclusion proof, when present: the RFC 6962 Merkle path from the entry's leaf hash to the root
  hash of a checkpoint, and the checkpoint (a signed note, golang.org/x/mod/sumdb/note) signed by the
  same log's key.
- The body: a `hashedrekord` or `dsse` entry of version 0.0.1 whose contents are this bundle's
  signature, certificate and digest (a log entry of another signature never vouches for this one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dockyard.signatures.sigstore_root import TrustRoot, verify_with

SUPPORTED_KINDS = {("hashedrekord", "0.0.1"), ("dsse", "0.0.1")}
_SIGNATURE_LINE = re.compile("\u2014 (\\S+) (\\S+)\n")


class LogProblem(ValueError):
    """Why the log entry does not vouch for the signature."""


@dataclass(frozen=True, slots=True)
class LoggedAt:
    time: datetime  # integratedTime, signed by the log (the SET)
    log_url: str
    proof_checked: bool  # an inclusion proof was present and verified


def check_entry(entry: Any, root: TrustRoot, proof_required: bool = True) -> tuple[LoggedAt, dict[str, Any]]:
    """The verified time of the entry and its decoded body; raises LogProblem. Bundles v0.2 and later
    must carry the inclusion proof (as sigstore-python requires); v0.1 may have only the promise."""
    if not isinstance(entry, dict):
        raise LogProblem("the tlog entry is not an object")
    kind = entry.get("kindVersion") or {}
    if (kind.get("kind"), kind.get("version")) not in SUPPORTED_KINDS:
        raise LogProblem(
            f"log entry kind {kind.get('kind')}/{kind.get('version')} is not supported "
            "(hashedrekord/0.0.1 or dsse/0.0.1: Rekor v1)"
        )
    try:
        log_id = base64.b64decode((entry.get("logId") or {}).get("keyId") or "", validate=True)
        body_b64 = entry["canonicalizedBody"]
        body = base64.b64decode(body_b64, validate=True)
        log_index = int(entry["logIndex"])
        integrated = int(entry["integratedTime"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise LogProblem(
            "the tlog entry lacks logId, logIndex, integratedTime or canonicalizedBody"
        ) from None
    log = root.tlog(log_id)
    if log is None:
        raise LogProblem(f"the entry's log {log_id.hex()} is not in the trust root")
    time = datetime.fromtimestamp(integrated, UTC)
    if not log.valid.covers(time):
        raise LogProblem(f"the log's key was not valid at {time.isoformat()}")
    promise = (entry.get("inclusionPromise") or {}).get("signedEntryTimestamp")
    if not isinstance(promise, str):
        raise LogProblem("no inclusion promise (SET): the signing time cannot be established offline")
    signed = json.dumps(
        {"body": body_b64, "integratedTime": integrated, "logID": log_id.hex(), "logIndex": log_index},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    try:
        set_signature = base64.b64decode(promise, validate=True)
    except (ValueError, binascii.Error):
        raise LogProblem("the inclusion promise is not base64") from None
    if not log.verify(set_signature, signed):
        raise LogProblem("the inclusion promise (SET) does not verify with the log's key")
    proof = entry.get("inclusionProof")
    if proof is None and proof_required:
        raise LogProblem("no inclusion proof (a bundle v0.2 or later must carry one)")
    if proof is not None:
        _check_proof(proof, body, log_id, log.key)
    try:
        decoded = json.loads(body)
    except ValueError:
        raise LogProblem("the entry's body is not JSON") from None
    if not isinstance(decoded, dict) or decoded.get("kind") != kind.get("kind"):
        raise LogProblem("the entry's body is not of its kind")
    return LoggedAt(time, log.base_url, proof is not None), decoded


def _check_proof(proof: Any, body: bytes, log_id: bytes, key: Any) -> None:
    try:
        index = int(proof["logIndex"])
        size = int(proof["treeSize"])
        root_hash = base64.b64decode(proof["rootHash"], validate=True)
        path = [base64.b64decode(h, validate=True) for h in proof.get("hashes") or []]
        note = (proof.get("checkpoint") or {}).get("envelope")
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise LogProblem("the inclusion proof is malformed") from None
    if not 0 <= index < size:
        raise LogProblem("the inclusion proof's index is outside its tree")
    leaf = hashlib.sha256(b"\x00" + body).digest()
    if merkle_root(leaf, index, size, path) != root_hash:
        raise LogProblem("the inclusion proof does not lead to its root hash")
    origin_size, origin_hash = _checkpoint(note, log_id, key)
    if origin_size != size or origin_hash != root_hash:
        raise LogProblem("the checkpoint is of another tree than the inclusion proof")


def merkle_root(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """The root hash an RFC 6962 inclusion proof leads to (None: the path has the wrong length)."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    if len(path) != inner + border:
        return None
    node = leaf
    for level, sibling in enumerate(path[:inner]):
        node = _children(sibling, node) if (index >> level) & 1 else _children(node, sibling)
    for sibling in path[inner:]:
        node = _children(sibling, node)
    return node


def _children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _checkpoint(note: Any, log_id: bytes, key: Any) -> tuple[int, bytes]:
    """(tree size, root hash) of a checkpoint signed by the log: a signed note whose text is
    `origin\\nsize\\nbase64 root\\n[other lines]` and whose signature lines are `— name base64(hint
    + signature)`, hint being the first 4 bytes of the log id."""
    if not isinstance(note, str):
        raise LogProblem("the inclusion proof has no checkpoint")
    if note.count("\n\n") != 1:
        raise LogProblem("the checkpoint is not a signed note")
    text, signatures = note.split("\n\n")
    text += "\n"
    lines = text.split("\n")
    try:
        size = int(lines[1])
        root_hash = base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError, binascii.Error):
        raise LogProblem("the checkpoint's text is malformed") from None
    for _name, encoded in _SIGNATURE_LINE.findall(signatures):
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            continue
        if raw[:4] == log_id[:4] and verify_with(key, raw[4:], text.encode()):
            return size, root_hash
    raise LogProblem("the checkpoint is not signed by the entry's log")


def check_hashedrekord(
    body: dict[str, Any], digest_hex: str, signature: bytes, leaf: x509.Certificate
) -> None:
    """The hashedrekord/0.0.1 body names this digest, signature and certificate."""
    spec = body.get("spec") or {}
    data_hash = ((spec.get("data") or {}).get("hash")) or {}
    if data_hash.get("algorithm") != "sha256" or data_hash.get("value") != digest_hex:
        raise LogProblem("the log entry is of another digest than the bundle's")
    logged = spec.get("signature") or {}
    if _b64_or_none(logged.get("content")) != signature:
        raise LogProblem("the log entry holds another signature than the bundle's")
    if not _same_certificate((logged.get("publicKey") or {}).get("content"), leaf):
        raise LogProblem("the log entry holds another certificate than the bundle's")


def check_dsse(body: dict[str, Any], payload: bytes, signatures: list[bytes], leaf: x509.Certificate) -> None:
    """The dsse/0.0.1 body names this payload's hash and exactly these signatures by this certificate."""
    spec = body.get("spec") or {}
    payload_hash = spec.get("payloadHash") or {}
    if (
        payload_hash.get("algorithm") != "sha256"
        or payload_hash.get("value") != hashlib.sha256(payload).hexdigest()
    ):
        raise LogProblem("the log entry is of another DSSE payload than the bundle's")
    logged = spec.get("signatures")
    if not isinstance(logged, list) or len(logged) != len(signatures):
        raise LogProblem("the log entry holds other signatures than the bundle's")
    for entry, signature in zip(logged, signatures, strict=True):
        if not isinstance(entry, dict) or _b64_or_none(entry.get("signature")) != signature:
            raise LogProblem("the log entry holds other signatures than the bundle's")
        if not _same_certificate(entry.get("verifier"), leaf):
            raise LogProblem("the log entry holds another certificate than the bundle's")


def _b64_or_none(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None


def _same_certificate(encoded_pem: Any, leaf: x509.Certificate) -> bool:
    """Rekor stores the certificate as base64 of its PEM."""
    pem = _b64_or_none(encoded_pem)
    if pem is None:
        return False
    try:
        logged = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return False
    return logged.public_bytes(serialization.Encoding.DER) == leaf.public_bytes(serialization.Encoding.DER)
