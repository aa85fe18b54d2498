"""Pull policies enforced on manifest GETs (`projects.pull_policies` holds the settings).

Nothing is verified on the request: the gate reads cached verdicts (`Signatures.cached`). An
artifact without a verdict counts as unsigned until the verification job (queued on push, and on the
push of a signature for it) has stored one. A platform manifest that is not signed itself passes when
an index of the same repository that references it is verified: the indexes are found with one
indexed query on `manifest_references.digest` (kind "manifest") joined to the manifests of the
repository.

Per process, decisions are kept by (repository, digest) until Topic.VERDICTS moves (a verdict
stored, a key added or deleted); the policies by project until Topic.POLICIES moves. A project with no
policy costs one dict lookup once its policy is cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from sqlalchemy import select

from dockyard.coordination.interfaces import InvalidatedCache
from dockyard.db.session import Database
from dockyard.projects.interfaces import PullRefused
from dockyard.projects.pull_policies import PullPolicies
from dockyard.projects.rbac import project_of
from dockyard.registry.models import Manifest, ManifestReference, Repository
from dockyard.signatures.interfaces import INVALID, Verdict

NOT_SIGNED = "artifact is not signed by a trusted key (policy: require signature)"
NOT_VERIFIED = (
    "artifact's signature does not verify with the project's trusted keys (policy: require signature)"
)
MAX_PARENTS = 20  # indexes looked at for a platform manifest
VERIFY_KIND = "verify-signature"  # signatures.tasks
UNKNOWN: Final = object()  # the fast path cannot answer without the database


class CachedVerdicts(Protocol):
    def cached(self, repository: str, digest: str) -> Verdict | None: ...


class PullGate:
    def __init__(
        self,
        db: Database,
        policies: PullPolicies,
        verdicts: CachedVerdicts,
        decisions: InvalidatedCache[tuple[str, str], str],
    ) -> None:
        self._db = db
        self.policies = policies
        self._verdicts = verdicts
        self._decisions = decisions  # "" allowed, else the refusal message
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
        if not policy.require_signature:
            return None
        decision = self._decisions.get((repository, digest))
        if decision is None:
            return UNKNOWN
        return decision or None

    def check(self, repository: str, digest: str) -> str | None:
        """The refusal message or None; reads the database on a cache miss."""
        policy = self.policies.get(project_of(repository))
        if not policy.require_signature:
            return None
        key = (repository, digest)
        decision = self._decisions.get(key)
        if decision is None:
            generation = self._decisions.current_generation()
            decision = self._signature(repository, digest)
            self._decisions.put(key, decision, generation)
        return decision or None

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
