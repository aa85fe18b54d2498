"""`dockyard verify`: every blob a manifest needs is recorded and stored with the right size; with
`deep`, every stored blob hashes to its digest."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from dockyard.errors import PathNotFound, StorageError
from dockyard.maintenance.interfaces import (
    MaintenanceServices,
    NullProgress,
    Problems,
    Progress,
    hasher_for,
    read_chunks,
)
from dockyard.registry.models import Manifest, ManifestReference, Repository
from dockyard.storage.blobs import live
from dockyard.storage.models import Blob
from dockyard.storage.paths import blob_data_path


@dataclass
class VerifyResult:
    manifests: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    problems: Problems = field(default_factory=Problems)


def verify(
    services: MaintenanceServices, deep: bool = False, progress: Progress | None = None
) -> VerifyResult:
    progress = progress or NullProgress()
    result = VerifyResult()
    with services.db.read() as connection:
        result.manifests = int(connection.scalar(select(func.count()).select_from(Manifest)) or 0)
        # Blobs that manifests reference but the blobs table does not know.
        unrecorded = connection.execute(
            select(Repository.name, Manifest.digest, ManifestReference.digest)
            .join(Manifest, Manifest.id == ManifestReference.manifest_id)
            .join(Repository, Repository.id == Manifest.repository_id)
            .outerjoin(Blob, Blob.digest == ManifestReference.digest)
            .where(ManifestReference.kind == "blob", Blob.digest.is_(None))
        ).all()
        # Every recorded blob: a referenced one must be there, and an unreferenced one is still
        # served to the repositories linked to it. Not those garbage collection is deleting
        # (tombstoned: their bytes may be gone already, and no reader sees them).
        blobs = connection.execute(select(Blob.digest, Blob.size).where(live()).order_by(Blob.digest)).all()
    for name, manifest, digest in unrecorded:
        result.problems.add(f"{name}@{manifest} references blob {digest}, which is not recorded")
    result.blobs = len(blobs)
    progress.phase(
        "hashing blobs" if deep else "checking blobs", sum(b.size for b in blobs) if deep else len(blobs)
    )
    for digest, size in blobs:
        problem = _check_blob(services, digest, size, deep, progress)
        if problem:
            result.problems.add(f"blob {digest}: {problem}")
        elif deep:
            result.bytes_hashed += size
        if not deep:
            progress.advance()
    return result


def _check_blob(
    services: MaintenanceServices, digest: str, size: int, deep: bool, progress: Progress
) -> str | None:
    path = blob_data_path(digest)
    try:
        info = services.driver.stat(path)
    except PathNotFound:
        progress.advance(size if deep else 0)
        return "missing from storage"
    except StorageError as exc:
        return f"cannot stat it: {exc}"
    if info.size != size:
        progress.advance(size if deep else 0)
        return f"stored size {info.size}, recorded {size}"
    if not deep:
        return None
    hasher = hasher_for(digest)
    try:
        with services.driver.open_read(path) as stream:
            for chunk in read_chunks(stream):
                hasher.update(chunk)
                progress.advance(len(chunk))
    except StorageError as exc:
        return f"cannot read it: {exc}"
    actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
    return None if actual == digest else f"corrupt: the stored bytes hash to {actual}"
