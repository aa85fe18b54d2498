"""SBOMs kept as OCI referrers of the image they describe: an artifact manifest whose `subject` is the
image, `artifactType` the SBOM's media type, one layer holding the document. `oras discover`, the
referrers API and other registries (by replication) see them like any referrer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from dockyard.content import mediatypes as mt
from dockyard.content.manifest import parse_manifest
from dockyard.registry.interfaces import ManifestRecord, PutManifestResult, ReferrerList
from dockyard.scanning.interfaces import PlatformUnknown
from dockyard.scanning.sbom import ARTIFACT_TYPES, render
from dockyard.scanning.services import Blobs, Inventory, Manifests

if TYPE_CHECKING:
    from dockyard.registry.blob_uploads import BlobUploads

MAX_SBOM_BYTES = 256 * 1024 * 1024
EMPTY = b"{}"
CREATED = "org.opencontainers.image.created"


class Referrers(Manifests, Protocol):
    def referrers(self, name: str, digest: str, artifact_type: str | None) -> ReferrerList: ...

    def put_manifest(
        self, name: str, reference: str, body: bytes, content_type: str | None
    ) -> PutManifestResult: ...


@dataclass(frozen=True, slots=True)
class StoredSbom:
    image: str  # digest of the image manifest it describes
    platform: str
    referrer: str  # digest of the artifact manifest that holds it
    document: bytes
    created: bool  # False: it was there already


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Sboms:
    def __init__(self, registry: Referrers, blobs: Blobs, uploads: BlobUploads, inventory: Inventory) -> None:
        self._registry = registry
        self._blobs = blobs
        self._uploads = uploads
        self._inventory = inventory

    def sbom(
        self,
        repository: str,
        reference: str,
        kind: str,
        platform: str | None = None,
        refresh: bool = False,
        store: bool = True,
    ) -> StoredSbom:
        """The image's SBOM in `kind` format: the stored one unless `refresh`; else made from its
        inventory now and (with `store`) pushed as a referrer of the image."""
        artifact_type = ARTIFACT_TYPES.get(kind)
        if artifact_type is None:
            raise ValueError(f"unknown SBOM format {kind!r}")
        image = self._image(repository, reference, platform)
        if not refresh:
            found = self._stored(repository, image.digest, artifact_type)
            if found is not None:
                return found
        report = self._inventory.inventory(repository, image.digest)
        [inventory] = report.images
        document = render(kind, repository, inventory)
        if not store:
            return StoredSbom(image.digest, inventory.platform, "", document, False)
        referrer = self._attach(repository, image, artifact_type, document)
        return StoredSbom(image.digest, inventory.platform, referrer, document, True)

    def _image(self, repository: str, reference: str, platform: str | None) -> ManifestRecord:
        return image_of(self._registry, repository, reference, platform)

    def _stored(self, repository: str, image: str, artifact_type: str) -> StoredSbom | None:
        listing = self._registry.referrers(repository, image, artifact_type)
        for descriptor in reversed(listing.descriptors):  # the newest first
            record = self._registry.get_manifest(repository, descriptor["digest"])
            layers = json.loads(record.content).get("layers") or []
            if not layers or layers[0].get("size", 0) > MAX_SBOM_BYTES:
                continue
            with self._blobs.open(layers[0]["digest"]) as blob:
                document = blob.read(MAX_SBOM_BYTES)
            platform = (descriptor.get("annotations") or {}).get("dev.dockyard.platform", "")
            return StoredSbom(image, platform, record.digest, document, False)
        return None

    def _push_blob(self, repository: str, data: bytes) -> str:
        digest = _digest(data)
        state = self._uploads.start(repository)
        session = self._uploads.begin_append(state)
        session.write(data)
        self._uploads.commit(session.finish(record=False), digest, len(data))
        return digest

    def _attach(self, repository: str, image: ManifestRecord, artifact_type: str, document: bytes) -> str:
        self._push_blob(repository, EMPTY)
        layer = self._push_blob(repository, document)
        parsed = parse_manifest(image.content, image.media_type)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": mt.OCI_EMPTY,
                "digest": _digest(EMPTY),
                "size": len(EMPTY),
                "data": "e30=",
            },
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(document)}],
            "subject": {"mediaType": parsed.media_type, "digest": image.digest, "size": image.size},
            "annotations": {CREATED: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
        body = json.dumps(manifest, indent=2).encode()
        result = self._registry.put_manifest(repository, _digest(body), body, mt.OCI_MANIFEST)
        return result.digest


def image_of(manifests: Manifests, repository: str, reference: str, platform: str | None) -> ManifestRecord:
    """The image manifest a reference names: itself, or an index's image for `platform` (which may be
    left out when the index has one image). Raises ManifestUnknown, PlatformUnknown."""
    record = manifests.get_manifest(repository, reference)
    parsed = parse_manifest(record.content, record.media_type)
    if not parsed.is_index:
        return record
    images: dict[str, str] = {}
    for child in parsed.manifests:
        spec = child.platform or {}
        if child.media_type in mt.IMAGE_MANIFESTS and spec.get("os") not in (None, "unknown"):
            name = "/".join(str(spec[key]) for key in ("os", "architecture", "variant") if spec.get(key))
            images.setdefault(name, child.digest)
    if platform is None and len(images) == 1:
        platform = next(iter(images))
    if platform not in images:
        raise PlatformUnknown(
            f"{repository}@{record.digest} is an index of {len(images)} images: choose one "
            f"({', '.join(sorted(images))})"
        )
    return manifests.get_manifest(repository, images[platform])
