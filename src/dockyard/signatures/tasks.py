"""The "verify-signature" job kind: compute and store the verdict on an artifact, so that a project
that requires signatures (`projects.pull_policies`) serves it once its signature verifies.

`{"repository": "team/app", "digest": "sha256:..."}`: queued on the push of a manifest into a project
that requires signatures, and on the push of a signature (the `.sig` tag, a referrer) for its subject.
`{"project": "team"}`: every artifact of the project (manifests that are no referrer), queued when a
project starts to require signatures and when a project that does gains or loses a trusted key (its
verdicts were made with the old key set: until verified again its artifacts count as unsigned).
Verification runs on verdicts it can reuse (`Signatures.verify`); storing a new one bumps
Topic.VERDICTS, so every process's pull gate looks again.
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


def verify_kind(
    db: Database, registry: Registry, blobs: BlobStore, on_change: Callable[[str], None]
) -> JobKind:
    def verify(ctx: JobContext) -> dict[str, Any]:
        from dockyard.errors import ManifestUnknown
        from dockyard.projects.interfaces import ProjectNotFound
        from dockyard.signatures.services import Signatures

        project = ctx.params.get("project")
        if isinstance(project, str):
            return _verify_project(ctx, db, Signatures(db, registry, blobs, on_change), project)
        repository, digest = ctx.params.get("repository"), ctx.params.get("digest")
        if not isinstance(repository, str) or not isinstance(digest, str):
            raise ValueError("params: repository and digest (or project) are required")
        try:
            verdict = Signatures(db, registry, blobs, on_change).verify(repository, digest)
        except (ManifestUnknown, ProjectNotFound) as exc:  # deleted since the push: nothing to judge
            ctx.log(f"{repository}@{digest}: {exc.message}")
            return {"repository": repository, "digest": digest, "status": "gone"}
        ctx.log(f"{repository}@{digest}: {verdict.status} ({verdict.reason})")
        return {"repository": repository, "digest": digest, "status": verdict.status}

    return JobKind(KIND, verify, concurrency=2, timeout=timedelta(hours=1), max_attempts=3)


def _verify_project(ctx: JobContext, db: Database, signatures: Any, project: str) -> dict[str, Any]:
    from sqlalchemy import select

    from dockyard.errors import ManifestUnknown
    from dockyard.registry.models import Manifest, Repository

    query = (
        select(Repository.name, Manifest.digest)
        .join(Manifest, Manifest.repository_id == Repository.id)
        .where(
            (Repository.name == project) | Repository.name.startswith(project + "/", autoescape=True),
            Manifest.subject_digest.is_(None),
        )
        .order_by(Repository.name, Manifest.id)
        .limit(MAX_PROJECT_ARTIFACTS)
    )
    with db.read() as connection:
        artifacts = [(str(row[0]), str(row[1])) for row in connection.execute(query)]
    counts: dict[str, int] = {}
    for repository, digest in artifacts:
        try:
            status = signatures.verify(repository, digest).status
        except ManifestUnknown:
            status = "gone"
        counts[status] = counts.get(status, 0) + 1
    ctx.log(f"project {project}: {len(artifacts)} artifacts verified: {counts}")
    return {"project": project, "artifacts": len(artifacts), "statuses": counts}


MAX_PROJECT_ARTIFACTS = 100_000


def queue_reverification(db: Database, enqueue: Callable[..., Any] | None, project: str) -> bool:
    """Queue the verification of every artifact of `project` if it requires signatures (a key was
    added or removed, or the policy was just turned on); whether it was queued."""
    from sqlalchemy import select

    from dockyard.projects.models import ProjectRow

    if enqueue is None:
        return False
    with db.read() as connection:
        required = connection.execute(
            select(ProjectRow.require_signature).where(ProjectRow.name == project)
        ).scalar()
    if not required:
        return False
    enqueue(KIND, {"project": project})
    return True


def queue_reverification_everywhere(db: Database, enqueue: Callable[..., Any] | None) -> int:
    """A system-wide trust root changed: queue the verification of every project that requires
    signatures; how many were queued."""
    from sqlalchemy import select

    from dockyard.projects.models import ProjectRow

    if enqueue is None:
        return 0
    with db.read() as connection:
        query = select(ProjectRow.name).where(ProjectRow.require_signature)
        names = list(connection.execute(query).scalars())
    for name in names:
        enqueue(KIND, {"project": name})
    return len(names)
