"""A Registry with the stores and project policies it works with, wired as `dockyard.services` wires
them, for tests that build one on their own database and storage driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard.audit.interfaces import AuditRecorder
from dockyard.coordination.interfaces import ChangeFeed
from dockyard.db.session import Database
from dockyard.projects.immutability import ImmutabilityRules
from dockyard.projects.quotas import Quotas
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.services import Registry
from dockyard.services import build_immutability, build_quotas
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.uploads import UploadStore


@dataclass
class RegistryParts:
    registry: Registry
    blob_uploads: BlobUploads
    blobs: BlobStore
    uploads: UploadStore
    quotas: Quotas
    immutability: ImmutabilityRules


def registry_parts(
    db: Database,
    driver: StorageDriver,
    feed: ChangeFeed,
    audit: AuditRecorder | None = None,
    blob_options: dict[str, Any] | None = None,
    **options: Any,
) -> RegistryParts:
    """`options` go to Registry (delete_enabled, read_only, ...), `blob_options` to the BlobStore; the
    blob uploads get Registry's read_only."""
    uploads = UploadStore(db, driver)
    blobs = BlobStore(db, driver, uploads, **(blob_options or {}))
    quotas = build_quotas(db, feed, audit)
    immutability = build_immutability(db, feed)
    registry = Registry(db, blobs, feed, quotas, immutability, **options)
    blob_uploads = BlobUploads(db, blobs, uploads, feed, quotas, registry.read_only)
    return RegistryParts(registry, blob_uploads, blobs, uploads, quotas, immutability)
