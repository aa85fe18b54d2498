"""`Inventory.inventory(repository, digest)`: the packages of an image, or of each image of an index."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, BinaryIO, Protocol

from dockyard.content import mediatypes as mt
from dockyard.content.manifest import parse_manifest
from dockyard.errors import DockyardError, PathNotFound
from dockyard.registry.interfaces import ManifestRecord
from dockyard.scanning.interfaces import Limits, NotAnImage
from dockyard.scanning.models import ImageInventory, InventoryReport, Unreadable
from dockyard.scanning.walker import Walk

log = logging.getLogger("dockyard.scanning")
IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})
MAX_CONFIG_BYTES = 4 * 1024 * 1024
ATTESTATION = "vnd.docker.reference.type"


class Manifests(Protocol):
    def get_manifest(self, name: str, reference: str) -> ManifestRecord: ...


class Blobs(Protocol):
    def open(self, digest: str, offset: int = 0) -> BinaryIO: ...


class Inventory:
    """Reads manifests from the registry and layer blobs from storage; holds no state between calls."""

    def __init__(self, manifests: Manifests, blobs: Blobs, limits: Limits | None = None) -> None:
        self._manifests = manifests
        self._blobs = blobs
        self._limits = limits or Limits()

    def inventory(self, repository: str, reference: str) -> InventoryReport:
        """The image's packages; for an index, each platform's. Raises ManifestUnknown, NotAnImage."""
        record = self._manifests.get_manifest(repository, reference)
        parsed = parse_manifest(record.content, record.media_type)
        report = InventoryReport(repository, record.digest, parsed.media_type)
        if not parsed.is_index:
            report.images.append(self._image(record))
            return report
        for child in parsed.manifests:
            annotations = child.annotations or {}
            platform = child.platform or {}
            if annotations.get(ATTESTATION) or platform.get("os") == "unknown":
                report.not_images[child.digest] = "attestation manifest"
                continue
            if child.media_type not in mt.IMAGE_MANIFESTS:
                report.not_images[child.digest] = f"{child.media_type} (not an image manifest)"
                continue
            try:
                report.images.append(self._image(self._manifests.get_manifest(repository, child.digest)))
            except NotAnImage as exc:
                report.not_images[child.digest] = exc.message
        if not report.images and not report.not_images:
            raise NotAnImage("the index lists no images")
        return report

    def _image(self, record: ManifestRecord) -> ImageInventory:
        parsed = parse_manifest(record.content, record.media_type)
        if parsed.is_index or parsed.config is None:
            raise NotAnImage(f"{record.digest} is not an image manifest")
        if parsed.config.media_type not in IMAGE_CONFIGS:
            raise NotAnImage(f"an artifact, not a container image (config {parsed.config.media_type})")
        config = self._config(parsed.config.digest)
        platform = "/".join(
            str(part)
            for part in (config.get("os"), config.get("architecture"), config.get("variant"))
            if part
        )
        started = time.monotonic()
        walk = Walk(self._limits)
        layers = json.loads(record.content).get("layers", [])
        image = ImageInventory(record.digest, platform or "unknown")
        for layer in layers:
            digest = layer["digest"]
            image.layers.append(digest)
            try:
                blob = self._blobs.open(digest)
            except PathNotFound:
                why = "foreign layer, not stored in the registry" if layer.get("urls") else "blob missing"
                walk.unreadable.append(Unreadable("layer", "", digest, why))
                continue
            with blob:
                walk.layer(digest, blob)
        image.distro = walk.distro()[0]
        image.packages = walk.packages()
        image.unreadable = walk.unreadable_formats()
        image.skipped = list(walk.skipped)
        image.skipped_total = walk.skipped_total
        image.bytes_read = walk.bytes_read
        image.seconds = time.monotonic() - started
        log.info(
            "inventory of %s: %d packages, %d unreadable, %d skipped, %d bytes in %.1f s",
            record.digest,
            len(image.packages),
            len(image.unreadable),
            walk.skipped_total,
            image.bytes_read,
            image.seconds,
        )
        return image

    def _config(self, digest: str) -> dict[str, Any]:
        try:
            with self._blobs.open(digest) as blob:
                data = blob.read(MAX_CONFIG_BYTES + 1)
        except PathNotFound:
            raise NotAnImage(f"the image config {digest} is missing") from None
        if len(data) > MAX_CONFIG_BYTES:
            raise NotAnImage("the image config is larger than 4 MiB")
        try:
            config = json.loads(data)
        except ValueError:
            raise NotAnImage("the image config is not JSON") from None
        if not isinstance(config, dict):
            raise NotAnImage("the image config is not a JSON object")
        return config


__all__ = ["DockyardError", "Inventory"]
