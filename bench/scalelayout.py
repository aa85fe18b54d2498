"""The scale scenario's image, its repository names, and distribution's storage layout for seeding it.

Both servers hold the same content: one small image (a config blob, a 4 KiB layer, an OCI manifest;
the same bytes every run) in N repositories `scale/r-NNNNNN`, tagged `latest`, plus `scale/tags` with
the manifest tagged many times. dockyard is seeded through its services (bench/scaleseed.py);
distribution's filesystem driver keeps its metadata as small files, which `write_distribution_layout`
writes as distribution itself would (docker/registry/v2: blob data by digest; per repository a link
file per layer, per manifest revision, and per tag's current target and index).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def repository_name(index: int) -> str:
    return f"scale/r-{index:06d}"


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True)
class ScaleImage:
    config: bytes
    layer: bytes
    manifest: bytes

    @classmethod
    def build(cls) -> ScaleImage:
        layer = random.Random(18).randbytes(4096)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(layer),
                        "size": len(layer),
                    }
                ],
            },
            separators=(",", ":"),
        ).encode()
        return cls(config, layer, manifest)

    @staticmethod
    def digest_of(data: bytes) -> str:
        return _digest(data)

    @property
    def config_digest(self) -> str:
        return _digest(self.config)

    @property
    def layer_digest(self) -> str:
        return _digest(self.layer)

    @property
    def manifest_digest(self) -> str:
        return _digest(self.manifest)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _link(directory: Path, digest: str) -> None:
    algorithm, hex_digest = digest.split(":", 1)
    _write(directory / algorithm / hex_digest / "link", digest.encode())


def write_distribution_layout(
    root: Path, image: ScaleImage, names: list[str], tagged: str, tags: int
) -> None:
    """Every repository in `names` holds the image as `latest`; `tagged` holds it under `tags` tags.
    `root` is distribution's storage.filesystem.rootdirectory."""
    v2 = root / "docker" / "registry" / "v2"
    for data in (image.config, image.layer, image.manifest):
        hex_digest = _digest(data).split(":", 1)[1]
        _write(v2 / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data", data)

    def repository(name: str, tag_names: list[str]) -> None:
        base = v2 / "repositories" / name
        for digest in (image.config_digest, image.layer_digest):
            _link(base / "_layers", digest)
        _link(base / "_manifests" / "revisions", image.manifest_digest)
        for tag in tag_names:
            tag_dir = base / "_manifests" / "tags" / tag
            _write(tag_dir / "current" / "link", image.manifest_digest.encode())
            _link(tag_dir / "index", image.manifest_digest)

    for name in names:
        repository(name, ["latest"])
    repository(tagged, [f"t{index:05d}" for index in range(tags)])
    os.sync()
