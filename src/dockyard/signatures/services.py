"""Trusted keys per project (`TrustedKeys`) and the verification of signatures (`Signatures`).

A verdict on an artifact of a repository is computed from the artifact's signature manifests in that
repository (cosign's `sha256-<hex>.sig` tag, referrers of cosign's and notation's artifact types) and
the project's key set, and stored in `signature_verdicts` per repository and digest, with the key-set
version and the signature manifests' digests it was made from. `verify` reuses it while both are
unchanged (two indexed lookups, no blob read, no signature check); `cached` is the one-query read for
hot paths (a pull policy): the stored verdict if made with the current key set, else None (then verify
it in a job, not on the request).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.content.digest import parse_digest
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import DockyardError, ManifestUnknown, ReadOnly
from dockyard.projects.rbac import project_of
from dockyard.projects.services import project_id
from dockyard.registry.interfaces import ManifestRecord, ReferrerList
from dockyard.registry.models import Repository
from dockyard.signatures.crypto import CERTIFICATE, Verifier, load_certificate
from dockyard.signatures.interfaces import (
    COSIGN_REFERRER,
    COSIGN_TYPE,
    INVALID,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    UNSIGNED,
    VERIFIED,
    KeySet,
    Verdict,
)
from dockyard.signatures.keys import TrustedKeys
from dockyard.signatures.models import (
    SignatureVerdictRow,
    TrustKeySetRow,
)
from dockyard.signatures.notation import (
    JWS_ENVELOPE,
    MAX_ENVELOPE_BYTES,
    NOTATION_ARTIFACT,
    Anchor,
    verify_envelope,
)
from dockyard.signatures.sigstore_bundle import (
    BUNDLE_ARTIFACT,
    BUNDLE_TYPES,
    MAX_BUNDLE_BYTES,
    BundleProblem,
    verify_bundle,
)
from dockyard.signatures.sigstore_root import InvalidRoot, parse_trust_root
from dockyard.signatures.trust_policy import TrustPolicy, parse_trust_policy

log = logging.getLogger("dockyard.signatures")
MAX_PAYLOAD_BYTES = 64 * 1024  # a simple-signing payload is a few hundred bytes
MAX_SIGNATURES = 50  # signature layers looked at per artifact
MAX_SIGNATURE_BYTES = 16 * 1024  # base64 annotation (an RSA-8192 signature is 1 KiB)
SIGSTORE_BUNDLE = "<sigstore bundle>"  # _signature_layers' marker (compared by identity) of a bundle layer


def signature_tag(digest: str) -> str:
    """cosign's tag for the signatures of `digest`: `sha256:abc` -> `sha256-abc.sig`."""
    return digest.replace(":", "-", 1) + ".sig"


# --- verification ---------------------------------------------------------------------------------
class Manifests(Protocol):
    def get_manifest(self, name: str, reference: str) -> ManifestRecord: ...

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> ReferrerList: ...


class Blobs(Protocol):
    def open(self, digest: str, offset: int = 0) -> BinaryIO: ...


class Signatures:
    """Verdicts on artifacts: computed from cosign signatures and the project's keys, cached."""

    def __init__(
        self, db: Database, manifests: Manifests, blobs: Blobs, on_change: Callable[[str], None] | None = None
    ) -> None:
        """`on_change(repository)` is called after a new verdict is stored in `repository`
        (Topic.VERDICTS with its name: that repository's pull decisions go)."""
        self._db = db
        self._manifests = manifests
        self._blobs = blobs
        self._keys = TrustedKeys(db)
        self._on_change = on_change

    def cached(self, repository: str, digest: str) -> Verdict | None:
        """The stored verdict on `digest` in `repository` if it was made with its project's current
        key set; None otherwise (never verified, or the keys changed since). One query; nothing is
        verified, and signatures pushed since the verdict are not looked for."""
        current = (
            select(TrustKeySetRow.version)
            .where(TrustKeySetRow.project_id == SignatureVerdictRow.project_id)
            .scalar_subquery()
            .label("current_version")
        )
        query = (
            select(*SignatureVerdictRow.__table__.c, current)
            .join(Repository, Repository.id == SignatureVerdictRow.repository_id)
            .where(Repository.name == repository, SignatureVerdictRow.digest == digest)
        )
        with self._db.read() as connection:
            row = connection.execute(query).first()
        if row is None or row.keyset_version != int(row.current_version or 0):
            return None
        return _from_row(row, cached=True)

    def verify(self, repository: str, reference: str) -> Verdict:
        """The verdict on the artifact `reference` (a tag or digest) of `repository`, against the keys
        of the repository's project. Raises ManifestUnknown, ProjectNotFound."""
        record = self._manifests.get_manifest(repository, reference)
        digest = record.digest
        project = project_of(repository)
        keyset = self._keys.keyset(project)
        found = self._signature_manifests(repository, digest)
        evidence = ",".join(sorted(found))
        with self._db.read() as connection:
            owner = project_id(connection, project)
            repository_id = connection.execute(
                select(Repository.id).where(Repository.name == repository)
            ).scalar()
            row = connection.execute(
                select(SignatureVerdictRow.__table__).where(
                    SignatureVerdictRow.repository_id == repository_id,
                    SignatureVerdictRow.digest == digest,
                )
            ).first()
        if row is not None and row.keyset_version == keyset.version and row.evidence == evidence:
            return _from_row(row, cached=True)
        verdict = self._judge(repository, digest, keyset, found)
        if repository_id is not None:
            self._store(owner, repository, int(repository_id), verdict, evidence)
        return verdict

    def _signature_manifests(self, repository: str, digest: str) -> dict[str, ManifestRecord]:
        """The signature manifests of `digest` by their digests: the .sig tag's and cosign referrers."""
        found: dict[str, ManifestRecord] = {}
        try:
            record = self._manifests.get_manifest(repository, signature_tag(digest))
            found[record.digest] = record
        except ManifestUnknown:
            pass
        descriptors = [
            *self._manifests.referrers(repository, digest, COSIGN_REFERRER).descriptors,
            *self._manifests.referrers(repository, digest, NOTATION_ARTIFACT).descriptors,
            *self._manifests.referrers(repository, digest, BUNDLE_ARTIFACT).descriptors,
        ]
        for descriptor in descriptors:
            try:
                record = self._manifests.get_manifest(repository, descriptor["digest"])
            except ManifestUnknown:  # deleted since the listing
                continue
            found[record.digest] = record
        return found

    def _judge(
        self, repository: str, digest: str, keyset: KeySet, found: dict[str, ManifestRecord]
    ) -> Verdict:
        policy = None
        if keyset.trust_policy is not None:
            policy = parse_trust_policy(keyset.trust_policy).for_repository(repository)
            if policy is not None and policy.level == "skip":
                reason = f"trust policy {policy.name!r} skips signature verification for {repository}"
                return Verdict(digest, VERIFIED, reason, keyset.version, checked_at=utcnow())
        verifiers = [(k.name, Verifier(k.public_key)) for k in keyset.keys if k.algorithm != CERTIFICATE]
        anchors = [
            Anchor(k.name, load_certificate(k.public_key), k.store)
            for k in keyset.keys
            if k.algorithm == CERTIFICATE
        ]
        failures: list[str] = []
        seen = 0
        for manifest_digest, record in sorted(found.items()):
            for payload_digest, signature in _signature_layers(record, failures):
                seen += 1
                if seen > MAX_SIGNATURES:
                    failures.append(f"more than {MAX_SIGNATURES} signatures: the rest were not checked")
                    break
                if signature is SIGSTORE_BUNDLE:
                    keyless = self._check_bundle(payload_digest, digest, keyset)
                    if isinstance(keyless, tuple):
                        return Verdict(
                            digest,
                            VERIFIED,
                            keyless[1],
                            keyset.version,
                            key=keyless[0],
                            signature=manifest_digest,
                            checked_at=utcnow(),
                        )
                    failures.append(f"{manifest_digest}: {keyless}")
                    continue
                if signature is None:
                    why = self._check_notation(payload_digest, digest, anchors, keyset, policy, repository)
                else:
                    why = self._check(payload_digest, signature, digest, verifiers)
                if isinstance(why, tuple):
                    key_name, *notes = why
                    reason = f"signed with key {key_name!r}" if key_name else "signed (authenticity logged)"
                    if notes:
                        reason += f" ({'; '.join(notes)})"
                    return Verdict(
                        digest,
                        VERIFIED,
                        reason,
                        keyset.version,
                        key=key_name or None,
                        signature=manifest_digest,
                        checked_at=utcnow(),
                    )
                failures.append(f"{manifest_digest}: {why}")
        if not found:
            return Verdict(digest, UNSIGNED, "no signature found", keyset.version, checked_at=utcnow())
        if not seen and not failures:
            failures.append("the signature manifests hold no cosign, notation or Sigstore signature")
        return Verdict(digest, INVALID, "; ".join(failures[:10]), keyset.version, checked_at=utcnow())

    def _check(
        self, payload_digest: str, signature_b64: str, digest: str, verifiers: list[tuple[str, Verifier]]
    ) -> str | tuple[str]:
        """(key name,) when the signature verifies; else why not."""
        if len(signature_b64) > MAX_SIGNATURE_BYTES:
            return "the signature annotation is too long"
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            return "the signature is not base64"
        try:
            payload = self._payload(payload_digest)
        except DockyardError as exc:
            return f"payload {payload_digest}: {exc.message}"
        claim = _claimed_digest(payload)
        if isinstance(claim, tuple):
            return claim[0]
        if claim != digest:
            return f"the payload names {claim}, not this artifact"
        if not verifiers:
            return "the project trusts no keys"
        for name, verifier in verifiers:
            if verifier.verify(signature, payload):
                return (name,)
        return "the signature does not verify with any of the project's keys"

    def _check_bundle(self, bundle_digest: str, digest: str, keyset: KeySet) -> str | tuple[str, str]:
        """(identity name, reason) when the Sigstore bundle verifies with one of the trust roots and
        identity policies the project has; else why not (every root's failure)."""
        if not keyset.identities:
            return "the project has no Sigstore identity policy (keyless signature)"
        if not keyset.sigstore_roots:
            return "neither the project nor the system has a Sigstore trust root (keyless signature)"
        try:
            document = self._payload(bundle_digest, MAX_BUNDLE_BYTES)
        except DockyardError as exc:
            return f"bundle {bundle_digest}: {exc.message}"
        problems = []
        for stored in keyset.sigstore_roots:
            scope = "system" if stored.project is None else "project"
            try:
                root = parse_trust_root(stored.document)
                verified = verify_bundle(document, digest, root, keyset.identities)
            except (BundleProblem, InvalidRoot) as exc:
                problems.append(f"trust root {stored.name!r} ({scope}): {exc}")
                continue
            reason = (
                f"signed keyless by {verified.san} (issuer {verified.issuer}; "
                f"identity {verified.identity!r}; trust root {stored.name!r}, {scope}; "
                f"logged at {verified.logged.time.isoformat()})"
            )
            return verified.identity, reason
        return "; ".join(problems)

    def _check_notation(
        self,
        envelope_digest: str,
        digest: str,
        anchors: list[Anchor],
        keyset: KeySet,
        policy: TrustPolicy | None,
        repository: str,
    ) -> str | tuple[str, ...]:
        try:
            envelope = self._payload(envelope_digest, MAX_ENVELOPE_BYTES)
        except DockyardError as exc:
            return f"JWS envelope {envelope_digest}: {exc.message}"
        if keyset.trust_policy is not None and policy is None:
            return f"no trust policy of the project applies to {repository} (notation signature)"
        if not anchors and (policy is None or policy.action("authenticity") == "enforce"):
            return "the project's trust store has no certificates (notation signature)"
        return verify_envelope(envelope, digest, anchors, policy=policy)

    def _payload(self, digest: str, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
        parsed = parse_digest(digest)
        with self._blobs.open(digest) as blob:
            payload = blob.read(limit + 1)
        if len(payload) > limit:
            raise DockyardError(f"over {limit} bytes")
        hasher = parsed.hasher()
        hasher.update(payload)
        if hasher.hexdigest() != parsed.encoded:
            raise DockyardError("the blob does not match its digest")
        return payload

    def _store(
        self, owner: int, repository: str, repository_id: int, verdict: Verdict, evidence: str
    ) -> None:
        values = {
            "project_id": owner,
            "keyset_version": verdict.keyset_version,
            "evidence": evidence,
            "status": verdict.status,
            "key_name": verdict.key,
            "signature": verdict.signature,
            "reason": verdict.reason,
            "checked_at": verdict.checked_at or utcnow(),
        }
        where = (
            SignatureVerdictRow.repository_id == repository_id,
            SignatureVerdictRow.digest == verdict.digest,
        )
        try:
            with self._db.write() as connection:
                if not connection.execute(update(SignatureVerdictRow).where(*where).values(values)).rowcount:
                    connection.execute(
                        insert(SignatureVerdictRow).values(
                            repository_id=repository_id, digest=verdict.digest, **values
                        )
                    )
        except IntegrityError:  # another node stored its verdict at the same moment: either will do
            log.debug("verdict on %s stored concurrently", verdict.digest)
        except ReadOnly:  # the verdict stands; it is computed again next time
            log.debug("read-only: verdict on %s not cached", verdict.digest)
            return
        if self._on_change is not None:
            self._on_change(repository)


def _signature_layers(record: ManifestRecord, failures: list[str]) -> Iterator[tuple[str, str | None]]:
    """(payload digest, base64 signature) of each cosign signature layer of a signature manifest;
    (envelope digest, None) of a notation JWS envelope; (bundle digest, SIGSTORE_BUNDLE) of a Sigstore
    bundle of cosign's `--new-bundle-format` referrer."""
    try:
        document: Any = json.loads(record.content)
        layers = document.get("layers") or []
    except (ValueError, AttributeError):
        failures.append(f"{record.digest}: not a JSON image manifest")
        return
    if not isinstance(layers, list):
        failures.append(f"{record.digest}: no layer list")
        return
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        if layer.get("mediaType") in BUNDLE_TYPES and isinstance(layer.get("digest"), str):
            if document.get("artifactType") == BUNDLE_ARTIFACT:
                yield layer["digest"], SIGSTORE_BUNDLE
            continue
        if layer.get("mediaType") == JWS_ENVELOPE and isinstance(layer.get("digest"), str):
            if document.get("artifactType") == NOTATION_ARTIFACT:
                yield layer["digest"], None
            continue
        if layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        annotations = layer.get("annotations") or {}
        signature = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
        digest = layer.get("digest")
        if not isinstance(signature, str) or not isinstance(digest, str):
            failures.append(f"{record.digest}: a simple-signing layer without {SIGNATURE_ANNOTATION}")
            continue
        yield digest, signature


def _claimed_digest(payload: bytes) -> str | tuple[str]:
    """The payload's critical.image.docker-manifest-digest, or (why it has none,)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return ("the payload is not JSON",)
    critical = _field(document, "critical")
    if not isinstance(critical, dict):
        return ("the payload has no critical section",)
    if _field(critical, "type") != COSIGN_TYPE:
        return (f"the payload's critical.type is not {COSIGN_TYPE!r}",)
    image = _field(critical, "image")
    claim = _field(image, "docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(claim, str):
        return ("the payload has no critical.image.docker-manifest-digest",)
    return claim


def _field(document: Any, name: str) -> Any:
    """A JSON object's member, its name matched without case as Go's encoding/json (cosign) does:
    cosign's spec shows `Docker-manifest-digest`, cosign writes `docker-manifest-digest`."""
    if not isinstance(document, dict):
        return None
    if name in document:
        return document[name]
    for key, value in document.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


def _from_row(row: Any, cached: bool) -> Verdict:
    return Verdict(
        row.digest,
        row.status,
        row.reason,
        row.keyset_version,
        key=row.key_name,
        signature=row.signature,
        cached=cached,
        checked_at=row.checked_at,
    )
