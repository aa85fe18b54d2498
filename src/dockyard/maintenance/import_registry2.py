"""`dockyard import-registry2`: adopt a registry:2 filesystem storage tree.

registry:2 keeps everything as files under `docker/registry/v2/`:

    blobs/sha256/<xx>/<hex>/data                                  every blob, manifests included
    repositories/<name>/_layers/sha256/<hex>/link                 blobs the repository may serve
    repositories/<name>/_manifests/revisions/sha256/<hex>/link    its manifests
    repositories/<name>/_manifests/tags/<tag>/current/link        its tags

Blobs are hard-linked into dockyard's content address when both are on one local filesystem (no
second copy; the registry:2 tree stays intact for a rollback), copied through the storage driver
otherwise, and recorded. Every manifest then goes through `Registry.put_manifest` -- by digest,
then once per tag -- so the same validation and indexing as a push applies. Running it again
changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.content import mediatypes
from dockyard.content.digest import parse_digest
from dockyard.content.manifest import parse_manifest
from dockyard.content.reference import validate_name
from dockyard.errors import DockyardError, PathNotFound
from dockyard.maintenance.interfaces import (
    MaintenanceError,
    MaintenanceServices,
    NullProgress,
    Problems,
    Progress,
    hasher_for,
    read_chunks,
)
from dockyard.registry.services import Registry
from dockyard.storage.paths import blob_data_path

RECORD_BATCH = 500  # blob rows per write transaction


@dataclass
class Registry2Repository:
    name: str
    layers: list[str] = field(default_factory=list)  # digests from _layers links
    revisions: list[str] = field(default_factory=list)  # manifest digests
    tags: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest


@dataclass
class ImportResult:
    blobs: int = 0
    blobs_linked: int = 0  # hard-linked: no bytes copied
    blobs_copied: int = 0
    blobs_present: int = 0  # already in dockyard (a second run)
    repositories: int = 0
    manifests: int = 0
    tags: int = 0
    problems: Problems = field(default_factory=Problems)


def import_registry2(
    path: Path, services: MaintenanceServices, progress: Progress | None = None, verify_digests: bool = True
) -> ImportResult:
    progress = progress or NullProgress()
    root = find_v2_root(path)
    result = ImportResult()
    repositories = list(scan_repositories(root, result.problems))
    manifest_digests = {d for repo in repositories for d in (*repo.revisions, *repo.tags.values())}
    layer_digests = {d for repo in repositories for d in repo.layers}
    # Manifests live in the DB, so a blob that is only ever a manifest is not adopted as a blob.
    blobs = [(d, p) for d, p in scan_blobs(root) if d not in manifest_digests or d in layer_digests]
    result.blobs = len(blobs)
    progress.phase("blobs", sum(p.stat().st_size for _, p in blobs))
    _adopt_blobs(blobs, services, progress, verify_digests, result)
    progress.phase("manifests", sum(len(r.revisions) + len(r.tags) for r in repositories))
    for repository in repositories:
        _import_repository(root, repository, services, progress, result)
    result.repositories = len(repositories)
    return result


def find_v2_root(path: Path) -> Path:
    """The `docker/registry/v2` directory, given the storage root or that directory itself."""
    for candidate in (path / "docker" / "registry" / "v2", path):
        if (candidate / "blobs").is_dir() or (candidate / "repositories").is_dir():
            return candidate
    raise MaintenanceError(f"{path} is not a registry:2 storage root (no docker/registry/v2 inside)")


def scan_blobs(root: Path) -> Iterator[tuple[str, Path]]:
    """(digest, data file) for every blob in the tree, in digest order."""
    blobs = root / "blobs"
    if not blobs.is_dir():
        return
    for algorithm in sorted(p for p in blobs.iterdir() if p.is_dir()):
        for prefix in sorted(p for p in algorithm.iterdir() if p.is_dir()):
            for blob in sorted(p for p in prefix.iterdir() if p.is_dir()):
                data = blob / "data"
                if data.is_file():
                    yield f"{algorithm.name}:{blob.name}", data


def scan_repositories(root: Path, problems: Problems) -> Iterator[Registry2Repository]:
    base = root / "repositories"
    if not base.is_dir():
        return
    for directory, subdirectories, _files in os.walk(base):
        here = Path(directory)
        if "_manifests" not in subdirectories and "_layers" not in subdirectories:
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("_"))
            continue
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("_"))  # nested repositories
        name = here.relative_to(base).as_posix()
        try:
            validate_name(name)
        except DockyardError:
            problems.add(f"repository {name!r}: not a valid name, skipped")
            continue
        repository = Registry2Repository(name)
        repository.layers = list(_links(here / "_layers"))
        repository.revisions = list(_links(here / "_manifests" / "revisions"))
        tags = here / "_manifests" / "tags"
        if tags.is_dir():
            for tag in sorted(tags.iterdir()):
                digest = _read_link(tag / "current" / "link")
                if digest:
                    repository.tags[tag.name] = digest
        yield repository


def _links(directory: Path) -> Iterator[str]:
    """Digests from `<directory>/<alg>/<hex>/link` files."""
    if not directory.is_dir():
        return
    for algorithm in sorted(p for p in directory.iterdir() if p.is_dir()):
        for entry in sorted(p for p in algorithm.iterdir() if p.is_dir()):
            digest = _read_link(entry / "link")
            if digest:
                yield digest


def _read_link(link: Path) -> str | None:
    try:
        digest = link.read_text().strip()
        parse_digest(digest)
    except (OSError, DockyardError):
        return None
    return digest


# --- blobs --------------------------------------------------------------------------------------
def _adopt_blobs(
    blobs: list[tuple[str, Path]],
    services: MaintenanceServices,
    progress: Progress,
    verify_digests: bool,
    result: ImportResult,
) -> None:
    pending: list[tuple[str, int]] = []
    for digest, data in blobs:
        size = data.stat().st_size
        try:
            if verify_digests:
                _check_digest(data, digest)
            how = _place(data, digest, size, services)
        except (MaintenanceError, DockyardError, OSError) as exc:
            result.problems.add(f"blob {digest}: {exc}")
            progress.advance(size)
            continue
        setattr(result, f"blobs_{how}", getattr(result, f"blobs_{how}") + 1)
        pending.append((digest, size))
        if len(pending) >= RECORD_BATCH:
            _record(services, pending)
        progress.advance(size)
    _record(services, pending)


def _check_digest(data: Path, digest: str) -> None:
    hasher = hasher_for(digest)
    with data.open("rb") as stream:
        for chunk in read_chunks(stream):
            hasher.update(chunk)
    actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise MaintenanceError(f"corrupt in the registry:2 tree: its bytes hash to {actual}")


def _place(data: Path, digest: str, size: int, services: MaintenanceServices) -> str:
    """Put the blob at its content address: 'present', 'linked' (hard link) or 'copied'."""
    driver = services.driver
    target = blob_data_path(digest)
    try:
        if driver.stat(target).size == size:
            return "present"
    except PathNotFound:
        pass
    local = driver.local_path(target)
    if local is not None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(data, local)
            return "linked"
        except FileExistsError:
            os.unlink(local)  # a wrong-sized leftover: replace it
            os.link(data, local)
            return "linked"
        except OSError:
            pass  # another filesystem (EXDEV) or no hard links there: copy
    writer = driver.writer(target)
    try:
        with data.open("rb") as stream:
            for chunk in read_chunks(stream):
                writer.write(chunk)
    except BaseException:
        writer.cancel()
        raise
    writer.commit()
    return "copied"


def _record(services: MaintenanceServices, pending: list[tuple[str, int]]) -> None:
    if not pending:
        return
    with services.db.write() as connection:
        for digest, size in pending:
            services.blobs.record(connection, digest, size)
    pending.clear()


# --- manifests and tags -------------------------------------------------------------------------
def _import_repository(
    root: Path,
    repository: Registry2Repository,
    services: MaintenanceServices,
    progress: Progress,
    result: ImportResult,
) -> None:
    registry = services.registry
    name = repository.name
    for digest in repository.layers:
        registry.mount_blob(name, digest, None)  # None: nothing to link (reported by the manifest)
    bodies: dict[str, tuple[bytes, str]] = {}
    for digest in dict.fromkeys([*repository.revisions, *repository.tags.values()]):
        try:
            body = (root / "blobs" / blob_data_path(digest).split("/", 1)[1]).read_bytes()
        except OSError:
            result.problems.add(f"{name}@{digest}: the manifest's bytes are missing from the tree")
            continue
        bodies[digest] = (body, _media_type_of(body))
    # Children before the indexes that list them: image manifests first, then indexes, in passes.
    waiting = sorted(bodies, key=lambda d: bodies[d][1] in mediatypes.INDEXES)
    failures: dict[str, str] = {}
    while waiting:
        stuck = []
        for digest in waiting:
            body, media_type = bodies[digest]
            try:
                _link_references(registry, name, body, media_type)
                registry.put_manifest(name, digest, body, media_type)
            except DockyardError as exc:
                stuck.append(digest)
                failures[digest] = f"{exc.message}{': ' + str(exc.detail) if exc.detail else ''}"
                continue
            result.manifests += 1
            progress.advance()
        if len(stuck) == len(waiting):
            break
        waiting = stuck
    for digest in waiting:
        result.problems.add(f"{name}@{digest}: not imported: {failures[digest]}")
        progress.advance()
    imported = set(bodies) - set(waiting)
    for tag, digest in repository.tags.items():
        if digest not in imported:
            result.problems.add(f"{name}:{tag}: not imported: its manifest {digest} was not")
        else:
            body, media_type = bodies[digest]
            try:
                registry.put_manifest(name, tag, body, media_type)
                result.tags += 1
            except DockyardError as exc:
                result.problems.add(f"{name}:{tag}: not imported: {exc.message}")
        progress.advance()


def _link_references(registry: Registry, name: str, body: bytes, media_type: str) -> None:
    """Link the blobs the manifest names (registry:2 may have served them without a _layers link,
    e.g. after a cross-repository mount)."""
    for descriptor in parse_manifest(body, media_type).blobs:
        registry.mount_blob(name, descriptor.digest, None)


def _media_type_of(body: bytes) -> str:
    """registry:2 keeps no content type beside a manifest: it is the document's own mediaType (OCI
    documents may leave it out: then an index if it lists manifests, else an image manifest)."""
    try:
        document = json.loads(body)
    except ValueError:
        return mediatypes.OCI_MANIFEST  # put_manifest reports it
    if not isinstance(document, dict):
        return mediatypes.OCI_MANIFEST
    media_type = document.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return mediatypes.OCI_INDEX if "manifests" in document else mediatypes.OCI_MANIFEST
