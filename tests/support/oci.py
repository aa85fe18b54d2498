"""Build OCI image layouts on disk in pure Python, so client tests need no network and no base image.

The images are real: gzip'd tar layers, a config whose rootfs.diff_ids are the sha256 of each uncompressed
tar, an image manifest per platform and, for several platforms, an image index. Everything is deterministic
for a given seed, and the digests are returned so tests can compare what comes back bit for bit.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# A fixed time keeps tar headers, gzip headers and configs reproducible.
FIXED_EPOCH = 1_700_000_000
FIXED_CREATED = "2023-11-14T22:13:20Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar
    files: dict[str, bytes]  # path inside the image -> content


@dataclass(frozen=True)
class Image:
    """One platform's image: its manifest, config and layers."""

    manifest: Descriptor
    config: Descriptor
    layers: tuple[Layer, ...]
    platform: tuple[str, str] | None

    @property
    def blob_digests(self) -> list[str]:
        return [self.config.digest, *(layer.descriptor.digest for layer in self.layers)]


@dataclass
class OciLayout:
    """What `write_oci_layout` wrote: the top-level descriptor (an index or a manifest) and every image."""

    path: Path
    ref: str
    top: Descriptor
    images: list[Image]
    blobs: dict[str, bytes] = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.top.media_type == OCI_INDEX

    @property
    def transport_ref(self) -> str:
        """The `oci:` reference skopeo, podman and buildah understand."""
        return f"oci:{self.path}:{self.ref}"


def make_layer_tar(files: dict[str, bytes]) -> bytes:
    """A reproducible uncompressed tar holding `files` (root-owned, 0644, fixed mtime)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted({str(Path(name).parent) for name in files} - {"."}):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_EPOCH
            tar.addfile(info)
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, FIXED_EPOCH
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def uncompressed(layer: bytes) -> bytes:
    """A layer's tar: gunzipped if it is gzip'd, as is if it is a plain tar."""
    return gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer


def read_layer_files(layer: bytes) -> dict[str, bytes]:
    """The regular files in a gzip'd (or plain) tar layer, by path without a leading './' or '/'."""
    data = uncompressed(layer)
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[member.name.removeprefix("./").lstrip("/")] = extracted.read()
    return out


class _LayoutWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs: dict[str, bytes] = {}
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def put(self, media_type: str, data: bytes) -> Descriptor:
        digest = sha256_digest(data)
        (self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        self.blobs[digest] = data
        return Descriptor(media_type, digest, len(data))


def _build_image(
    writer: _LayoutWriter, rng: random.Random, layers: int, layer_size: int, platform: tuple[str, str] | None
) -> Image:
    os_name, arch = platform or ("linux", "amd64")
    built: list[Layer] = []
    for index in range(layers):
        # Random bytes do not compress, so a layer's size on the wire is about layer_size.
        files = {
            f"layer{index}/data.bin": rng.randbytes(layer_size),
            f"layer{index}/hello.txt": f"layer {index} for {os_name}/{arch}\n".encode(),
        }
        tar = make_layer_tar(files)
        descriptor = writer.put(OCI_LAYER_GZIP, gzip_bytes(tar))
        built.append(Layer(descriptor, sha256_digest(tar), files))
    config = {
        "created": FIXED_CREATED,
        "architecture": arch,
        "os": os_name,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/layer0/hello.txt"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
        "history": [
            {"created": FIXED_CREATED, "created_by": f"tests.support.oci layer {i}"} for i in range(layers)
        ],
    }
    config_descriptor = writer.put(OCI_CONFIG, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer.descriptor.to_json() for layer in built],
    }
    manifest_descriptor = writer.put(OCI_MANIFEST, canonical_json(manifest))
    return Image(manifest_descriptor, config_descriptor, tuple(built), platform)


def write_oci_layout(
    directory: Path,
    ref: str = "latest",
    layers: int = 2,
    layer_size: int = 64 * 1024,
    platforms: list[tuple[str, str]] | None = None,
    seed: int = 0,
) -> OciLayout:
    """Write an OCI image layout into `directory` tagged `ref`.

    With `platforms` (e.g. [("linux", "amd64"), ("linux", "arm64")]) the tag points at an image index with one
    manifest per platform; without, at a single image manifest. Different seeds give different blobs.
    """
    writer = _LayoutWriter(directory)
    rng = random.Random(seed)
    if platforms:
        images = [_build_image(writer, rng, layers, layer_size, platform) for platform in platforms]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {**image.manifest.to_json(), "platform": {"os": os_name, "architecture": arch}}
                for image, (os_name, arch) in zip(images, platforms, strict=True)
            ],
        }
        top = writer.put(OCI_INDEX, canonical_json(index))
    else:
        images = [_build_image(writer, rng, layers, layer_size, None)]
        top = images[0].manifest
    layout_index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**top.to_json(), "annotations": {REF_NAME_ANNOTATION: ref}}],
    }
    (directory / "index.json").write_bytes(canonical_json(layout_index))
    return OciLayout(directory, ref, top, images, writer.blobs)


def read_oci_layout(directory: Path, ref: str = "latest") -> tuple[Descriptor, dict[str, bytes]]:
    """Read back a layout (e.g. one skopeo wrote): the descriptor tagged `ref` and every blob by digest."""
    layout_index = json.loads((directory / "index.json").read_bytes())
    matches = [
        entry
        for entry in layout_index["manifests"]
        if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) == ref
    ]
    if len(matches) != 1:
        found = layout_index["manifests"]
        raise LookupError(f"{directory}: expected one manifest tagged {ref!r}, found {found}")
    top = Descriptor(matches[0]["mediaType"], matches[0]["digest"], matches[0]["size"])
    blobs = {"sha256:" + path.name: path.read_bytes() for path in (directory / "blobs" / "sha256").iterdir()}
    return top, blobs


def write_docker_archive(layout: OciLayout, image: Image, path: Path, repo_tags: list[str]) -> Path:
    """`image` as `docker save` writes it, the tar `docker load` reads (docker 20.10 loads no OCI layout):
    its config as is (so the image ID is the config's digest), each layer uncompressed, and a
    manifest.json naming them with the tags to give it."""
    config_name = image.config.digest.removeprefix("sha256:") + ".json"
    layer_names = [layer.diff_id.removeprefix("sha256:") + "/layer.tar" for layer in image.layers]
    manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]
    members = {
        config_name: layout.blobs[image.config.digest],
        **{
            name: uncompressed(layout.blobs[layer.descriptor.digest])
            for name, layer in zip(layer_names, image.layers, strict=True)
        },
        "manifest.json": json.dumps(manifest).encode(),
    }
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, FIXED_EPOCH
            tar.addfile(info, io.BytesIO(data))
    return path
