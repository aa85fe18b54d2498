"""Seed a registry through its HTTP API, the same way for both servers.

One small image (config + layer + manifest) in `bench/app` tagged 100 times, the same image in 99 more
repositories (100 in the catalog), and a few 1 MiB and 64 MiB blobs in `bench/app` for the pull scenarios.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from bench.engines import HttpClientSession, drive
from bench.operations import Blob, UniqueBlobs, push_monolithic
from bench.wire import Operation, Request

IMAGE_REPO = "bench/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = ",".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
TAG_COUNT = 100
REPO_COUNT = 100
PULL_BLOBS = {1 << 20: 8, 64 << 20: 2}  # size -> how many distinct blobs the pull scenarios cycle over


@dataclass(frozen=True)
class Seeded:
    layer_digest: str
    tag: str
    pull_blobs: dict[int, list[str]]  # size -> digests in IMAGE_REPO


def _blob(content: bytes) -> Blob:
    return Blob((content,), f"sha256:{hashlib.sha256(content).hexdigest()}")


def _put_manifest(repo: str, tag: str, body: bytes) -> Operation:
    yield Request(
        "PUT", f"/v2/{repo}/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, (body,), expect=(201,)
    )
    return len(body)


def image_manifest(config: Blob, layer: Blob) -> bytes:
    def descriptor(media_type: str, blob: Blob) -> dict[str, object]:
        return {"mediaType": media_type, "digest": blob.digest, "size": blob.size}

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SmallImage:
    config: Blob
    layer: Blob
    manifest: bytes


def small_image() -> SmallImage:
    """A config blob, a random 4 KiB layer and the OCI manifest naming them."""
    layer = _blob(os.urandom(4096))
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }
    config = _blob(json.dumps(config_doc).encode())
    return SmallImage(config, layer, image_manifest(config, layer))


def push_image(session: HttpClientSession, repo: str, image: SmallImage, tags: list[str]) -> None:
    drive(session, push_monolithic(repo, image.config))
    drive(session, push_monolithic(repo, image.layer))
    for tag in tags:
        drive(session, _put_manifest(repo, tag, image.manifest))


def seed(
    host: str,
    port: int,
    headers: dict[str, str] | None = None,
    *,
    minimal: bool = False,
    repositories: int = REPO_COUNT,
) -> Seeded:
    """Everything the scenarios read; `minimal`: only `IMAGE_REPO:latest` (the auth scenarios need no more);
    `repositories`: how many the catalog lists (the ha scenarios do not list it: 1).

    `headers` go on every request (credentials for a registry with auth on).
    """
    session = HttpClientSession(host, port, headers)
    try:
        image = small_image()
        if minimal:
            push_image(session, IMAGE_REPO, image, ["latest"])
            return Seeded(image.layer.digest, "latest", {})
        push_image(session, IMAGE_REPO, image, ["latest"] + [f"v{index}" for index in range(1, TAG_COUNT)])
        for index in range(1, repositories):
            push_image(session, f"bench/repo-{index:03d}", image, ["latest"])
        pull_blobs: dict[int, list[str]] = {}
        for size, count in PULL_BLOBS.items():
            blobs = UniqueBlobs(size)
            pull_blobs[size] = []
            for _ in range(count):
                blob = blobs.new()
                drive(session, push_monolithic(IMAGE_REPO, blob))
                pull_blobs[size].append(blob.digest)
        return Seeded(image.layer.digest, "latest", pull_blobs)
    finally:
        session.close()
