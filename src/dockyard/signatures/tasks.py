"""The "verify-signature" job kind: compute and store the verdict on an artifact, so that a project
that requires signatures (`projects.pull_policies`) serves it once its signature verifies.

`{"repository": "team/app", "digest": "sha256:..."}`: queued on the push of a manifest into a project
that requires signatures, and on the push of a signature (the `.sig` tag, a referrer) for its subject.
Verification runs on verdicts it can reuse (`Signatures.verify`); storing a new one bumps
Topic.SIGNATURES, so every process's pull gate looks again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dockyard.jobs.interfaces import JobContext, JobKind

if TYPE_CHECKING:
    from dockyard.db.session import Database
    from dockyard.registry.services import Registry
    from dockyard.storage.blobs import BlobStore

KIND = "verify-signature"


def verify_kind(db: Database, registry: Registry, blobs: BlobStore, on_change: Callable[[], None]) -> JobKind:
    def verify(ctx: JobContext) -> dict[str, Any]:
        from dockyard.errors import ManifestUnknown
        from dockyard.projects.interfaces import ProjectNotFound
        from dockyard.signatures.services import Signatures

        repository, digest = ctx.params.get("repository"), ctx.params.get("digest")
        if not isinstance(repository, str) or not isinstance(digest, str):
            raise ValueError("params: repository and digest are required")
        try:
            verdict = Signatures(db, registry, blobs, on_change).verify(repository, digest)
        except (ManifestUnknown, ProjectNotFound) as exc:  # deleted since the push: nothing to judge
            ctx.log(f"{repository}@{digest}: {exc.message}")
            return {"repository": repository, "digest": digest, "status": "gone"}
        ctx.log(f"{repository}@{digest}: {verdict.status} ({verdict.reason})")
        return {"repository": repository, "digest": digest, "status": verdict.status}

    return JobKind(KIND, verify, concurrency=2, timeout=timedelta(minutes=5), max_attempts=3)
