"""Pull policies enforced on manifest GETs (`projects.pull_policies` holds the settings).

Nothing is verified on the request: the gate reads cached verdicts (`Signatures.cached`). An
artifact without a verdict counts as unsigned until the verification job (queued on push, and on the
push of a signature for it) has stored one. A platform manifest that is not signed itself passes when
an index of the same repository that references it is verified: the indexes are found with one
indexed query on `manifest_references.digest` (kind "manifest") joined to the manifests of the
repository.

Signatures, attestations and SBOMs themselves are not judged (`is_supporting_artifact`): cosign and
notation read them to verify, in exactly the projects that require signatures.

Per process, decisions are kept by (repository, digest) until Topic.VERDICTS moves for the repository
(a verdict or scan result stored in it) or as a whole (a key added or deleted); the policies by
project until Topic.POLICIES moves. A project with no
policy costs one dict lookup once its policy is cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from sqlalchemy import select

from dockyard.coordination.interfaces import KeyedInvalidatedCache
from dockyard.db.session import Database
from dockyard.projects.interfaces import PullRefused
from dockyard.projects.pull_policies import PullPolicies, PullPolicy
from dockyard.projects.rbac import project_of
from dockyard.registry.models import Manifest, ManifestReference, Repository
from dockyard.signatures.interfaces import INVALID, Verdict

NOT_SIGNED = "artifact is not signed by a trusted key (policy: require signature)"
NOT_VERIFIED = (
    "artifact's signature does not verify with the project's trusted keys (policy: require signature)"
)
MAX_PARENTS = 20  # indexes looked at for a platform manifest
# Decisions that read scan results are kept at most this long: an allowlist entry that expired is seen
# within it (a stored scan result bumps Topic.VERDICTS with its repository, as a stored verdict does).
SCAN_DECISION_SECONDS = 5.0
VERIFY_KIND = "verify-signature"  # signatures.tasks
UNKNOWN: Final = object()  # the fast path cannot answer without the database


# Layers of the artifacts that accompany an image: signatures (cosign's simple-signing payload, notation's
# JWS and COSE envelopes, DSSE and Sigstore bundles), attestations and SBOMs. A manifest whose layers are
# all of these holds no filesystem: no runtime can run it, and clients that verify (cosign, notation,
# `oras discover`) must read it in a project whose policy refuses what is not signed or scanned.
SUPPORTING_LAYERS = frozenset(
    {
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "application/jose+json",
        "application/cose",
        "application/vnd.dsse.envelope.v1+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.in-toto+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/spdx+json",
        "text/spdx",
    }
)
IMAGE_MANIFEST_TYPES = frozenset(
    {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
)


def is_supporting_artifact(content: bytes, media_type: str) -> bool:
    """A signature, attestation or SBOM manifest: an image manifest with at least one layer and every
    layer of a SUPPORTING_LAYERS type. Pull policies do not apply to them (as Harbor's do not): an
    index, or a manifest with any filesystem layer, is always judged."""
    if media_type not in IMAGE_MANIFEST_TYPES:
        return False
    try:
        layers = json.loads(content).get("layers")
    except (ValueError, AttributeError):
        return False
    if not isinstance(layers, list) or not layers:
        return False
    return all(isinstance(layer, dict) and layer.get("mediaType") in SUPPORTING_LAYERS for layer in layers)


class CachedVerdicts(Protocol):
    def cached(self, repository: str, digest: str) -> Verdict | None: ...


class ScanSummary(Protocol):
    def at_or_above(self, severity: str) -> int | None: ...


class ScanSummaries(Protocol):
    def summary(self, repository: str, digest: str) -> ScanSummary | None: ...


# What "block <severity>" counts, for the message: the levels at or above it.
_LEVELS = {
    "critical": "critical",
    "high": "high or critical",
    "medium": "medium, high or critical",
    "low": "low, medium, high or critical",
}


def vulnerable_message(count: int, severity: str) -> str:
    noun = "vulnerability" if count == 1 else "vulnerabilities"
    return f"{count} {_LEVELS[severity]} {noun} (policy: block {severity})"


UNSCANNED = "artifact has not been scanned (policy: block unscanned)"


class PullGate:
    def __init__(
        self,
        db: Database,
        policies: PullPolicies,
        verdicts: CachedVerdicts,
        decisions: KeyedInvalidatedCache[tuple[str, str, PullPolicy], str],  # by repository
        summaries: ScanSummaries | None = None,
    ) -> None:
        self._db = db
        self.policies = policies
        self._verdicts = verdicts
        self._decisions = decisions  # "" allowed, else the refusal message
        self.summaries = summaries  # stored scan results (None: the vulnerability policies pass)
        self.enqueue: Callable[..., Any] | None = None  # the job queue's (Services sets it)

    def push_needs_work(self, repository: str) -> bool:
        """Whether `pushed` has anything to do (no I/O): False unless the project's policy is cached
        and requires no signature."""
        policy = self.policies.cached(project_of(repository))
        return policy is None or policy.require_signature

    def pushed(self, repository: str, reference: str, digest: str, subject: str | None) -> None:
        """After a manifest push into a project that requires signatures: queue the verification of
        the artifact, or of the subject of a signature (cosign's `sha256-<hex>.sig` tag, a referrer)."""
        if self.enqueue is None or not self.policies.get(project_of(repository)).require_signature:
            return
        target = subject
        if target is None and reference.startswith("sha256-") and reference.endswith(".sig"):
            target = "sha256:" + reference.removeprefix("sha256-").removesuffix(".sig")
        self.enqueue(VERIFY_KIND, {"repository": repository, "digest": target or digest})

    def fast(self, repository: str, digest: str) -> object:
        """The refusal message, None (allowed) or UNKNOWN (call `check` in a worker thread). No I/O."""
        policy = self.policies.cached(project_of(repository))
        if policy is None:
            return UNKNOWN
        if not policy.active:
            return None
        decision = self._decisions.get((repository, digest, policy))
        if decision is None:
            return UNKNOWN
        return decision or None

    def check(self, repository: str, digest: str) -> str | None:
        """The refusal message or None; reads the database on a cache miss."""
        policy = self.policies.get(project_of(repository))
        if not policy.active:
            return None
        key = (repository, digest, policy)
        decision = self._decisions.get(key)
        if decision is None:
            generation = self._decisions.current_generation(key)
            decision = self._decide(repository, digest, policy)
            scanned = policy.block_severity != "none" or policy.block_unscanned
            expires = time.monotonic() + SCAN_DECISION_SECONDS if scanned else None
            self._decisions.put(key, decision, generation, expires)
        return decision or None

    def _decide(self, repository: str, digest: str, policy: PullPolicy) -> str:
        if policy.require_signature:
            refusal = self._signature(repository, digest)
            if refusal:
                return refusal
        if policy.block_severity != "none" or policy.block_unscanned:
            return self._vulnerabilities(repository, digest, policy)
        return ""

    def _vulnerabilities(self, repository: str, digest: str, policy: PullPolicy) -> str:
        """The artifact's own scan, else (a platform manifest) that of an index that lists it."""
        if self.summaries is None:
            return UNSCANNED if policy.block_unscanned else ""
        summary = self.summaries.summary(repository, digest)
        if summary is None or summary.at_or_above("low") is None:
            for parent in self._indexes_of(repository, digest):
                found = self.summaries.summary(repository, parent)
                if found is not None and found.at_or_above("low") is not None:
                    summary = found
                    break
        if summary is None or summary.at_or_above("low") is None:  # never scanned, pending, failed
            return UNSCANNED if policy.block_unscanned else ""
        if policy.block_severity != "none":
            count = summary.at_or_above(policy.block_severity) or 0
            if count:
                return vulnerable_message(count, policy.block_severity)
        return ""

    def enforce(self, repository: str, digest: str) -> None:
        refusal = self.check(repository, digest)
        if refusal:
            raise PullRefused(refusal)

    def _signature(self, repository: str, digest: str) -> str:
        verdict = self._verdicts.cached(repository, digest)
        if verdict is not None and verdict.verified:
            return ""
        for parent in self._indexes_of(repository, digest):
            found = self._verdicts.cached(repository, parent)
            if found is not None and found.verified:
                return ""
        return NOT_VERIFIED if verdict is not None and verdict.status == INVALID else NOT_SIGNED

    def _indexes_of(self, repository: str, digest: str) -> list[str]:
        """The digests of the repository's manifests (indexes) that reference `digest` as a child."""
        query = (
            select(Manifest.digest)
            .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(
                ManifestReference.digest == digest,
                ManifestReference.kind == "manifest",
                Repository.name == repository,
            )
            .limit(MAX_PARENTS)
        )
        with self._db.read() as connection:
            return [str(row) for row in connection.execute(query).scalars()]
