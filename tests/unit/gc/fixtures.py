"""A registry on a real database and filesystem storage, with helpers that push through it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dockyard.content import mediatypes
from dockyard.content.digest import digest_of
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.coordination.interfaces import ChangeFeed
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.gc.interfaces import GCOptions, GCReport
from dockyard.gc.services import GarbageCollector
from dockyard.projects.quotas import Quotas
from dockyard.registry.blob_uploads import BlobUploads
from dockyard.registry.models import Manifest
from dockyard.registry.services import Registry
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.models import Blob
from dockyard.storage.paths import blob_data_path
from dockyard.storage.uploads import UploadStore
from tests.support.registry import RegistryParts, registry_parts

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
HOURS_LATER = timedelta(hours=3)  # the collector's clock runs this far ahead: today's pushes are old


@dataclass
class Env:
    db: Database
    driver: FilesystemDriver
    feed: ChangeFeed
    parts: RegistryParts  # the registry, its stores and project policies

    @classmethod
    def on(cls, db: Database, root: Path, feed: ChangeFeed | None = None) -> Env:
        driver = FilesystemDriver(root)
        feed = feed or InProcessChangeFeed()
        return cls(db, driver, feed, registry_parts(db, driver, feed))

    @property
    def registry(self) -> Registry:
        return self.parts.registry

    @property
    def blob_uploads(self) -> BlobUploads:
        return self.parts.blob_uploads

    @property
    def blobs(self) -> BlobStore:
        return self.parts.blobs

    @property
    def uploads(self) -> UploadStore:
        return self.parts.uploads

    @property
    def quotas(self) -> Quotas:
        return self.parts.quotas

    # --- pushing ------------------------------------------------------------------------------
    def push_blob(self, repo: str, data: bytes) -> dict[str, Any]:
        """Bytes into storage and a linked row, as a finished upload leaves them."""
        digest = digest_of(data)
        self.driver.put_content(blob_data_path(digest), data)
        with self.db.write() as connection:
            self.blobs.record(connection, digest, len(data))
        assert self.registry.mount_blob(repo, digest, None) == len(data)
        return {"mediaType": LAYER, "digest": digest, "size": len(data)}

    def push_image(
        self, repo: str, tag: str | None, layers: list[bytes], seed: str = "", subject: str | None = None
    ) -> str:
        config = self.push_blob(
            repo, json.dumps({"os": "linux", "architecture": "amd64", "seed": seed}).encode()
        )
        config["mediaType"] = mediatypes.OCI_CONFIG
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": config,
            "layers": [self.push_blob(repo, layer) for layer in layers],
        }
        if subject is not None:
            document["subject"] = self._descriptor(repo, subject)
            document["artifactType"] = "application/vnd.example.signature"
        return self._put(repo, tag, document)

    def push_index(self, repo: str, tag: str | None, children: list[str]) -> str:
        document = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [self._descriptor(repo, child) for child in children],
        }
        return self._put(repo, tag, document)

    def _put(self, repo: str, tag: str | None, document: dict[str, Any]) -> str:
        body = json.dumps(document).encode()
        digest = digest_of(body)
        self.registry.put_manifest(repo, tag or digest, body, document["mediaType"])
        return digest

    def _descriptor(self, repo: str, digest: str) -> dict[str, Any]:
        record = self.registry.get_manifest(repo, digest)
        return {"mediaType": record.media_type, "digest": digest, "size": len(record.content)}

    # --- looking ------------------------------------------------------------------------------
    def collector(self, ahead: timedelta = HOURS_LATER) -> GarbageCollector:
        return GarbageCollector(self.db, self.driver, self.feed, clock=lambda: utcnow() + ahead)

    def collect(self, ahead: timedelta = HOURS_LATER, **options: Any) -> GCReport:
        return self.collector(ahead).run(GCOptions(**options))

    def blob_digests(self) -> set[str]:
        with self.db.read() as connection:
            return set(connection.scalars(select(Blob.digest)))

    def stored_digests(self) -> set[str]:
        """The blobs present in storage, by walking it."""
        root = self.driver.root
        found = set()
        for path in Path(root, "blobs").rglob("data"):
            found.add(f"{path.parent.parent.parent.name}:{path.parent.name}")
        return found

    def manifest_count(self) -> int:
        with self.db.read() as connection:
            return int(connection.scalar(select(func.count()).select_from(Manifest)) or 0)

    def has_manifest(self, repo: str, digest: str) -> bool:
        try:
            self.registry.get_manifest(repo, digest)
        except Exception:
            return False
        return True
