"""The one conformance suite every RemoteRegistry passes: the fake, and the real client against real
registries (Debian's docker-registry open and with htpasswd, dockyard with token auth).

Use it by subclassing in a test module and overriding the `upstream` fixture: a fresh RemoteRegistry,
and a `push(repository, tag, manifest, media_type, blobs)` that puts an image into the registry behind it
(by the registry's own API, not through the client under test)::

    class TestMine(RemoteRegistryConformance):
        @pytest.fixture
        def upstream(self): return MyRemote(...), my_push

It imports pytest, so it is for tests only: nothing in the running registry imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from dockyard.errors import DigestInvalid, NameInvalid
from dockyard.upstream.interfaces import RemoteRegistry, UpstreamError, UpstreamNotFound

Push = Callable[[str, str, bytes, str, list[bytes]], None]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MiB = 1 << 20


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Seeded:
    repository: str
    tag: str
    manifest: bytes
    media_type: str
    config: bytes
    layer: bytes

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


def image(repository: str, tag: str, layer_size: int = 3 * MiB) -> Seeded:
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repository, "tag": tag}).encode()
    layer = os.urandom(layer_size)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}],
    }  # fmt: skip
    # Indented: the bytes must come back as pushed, not re-serialised.
    return Seeded(repository, tag, json.dumps(document, indent=3).encode(), OCI_MANIFEST, config, layer)


class RemoteRegistryConformance:
    @pytest.fixture
    def upstream(self) -> tuple[RemoteRegistry, Push]:
        raise NotImplementedError("override the upstream fixture")

    @pytest.fixture
    def remote(self, upstream: tuple[RemoteRegistry, Push]) -> RemoteRegistry:
        return upstream[0]

    @pytest.fixture
    def seeded(self, upstream: tuple[RemoteRegistry, Push]) -> Seeded:
        content = image("conformance/app", "v1")
        upstream[1](content.repository, content.tag, content.manifest, content.media_type,
                    [content.config, content.layer])  # fmt: skip
        return content

    # --- health ---------------------------------------------------------------------------------
    def test_check_answers(self, remote: RemoteRegistry) -> None:
        check = remote.check()
        assert check.auth in ("none", "basic", "bearer")

    # --- manifests ------------------------------------------------------------------------------
    def test_manifest_by_tag_is_the_pushed_bytes(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        manifest = remote.get_manifest(seeded.repository, seeded.tag)
        assert manifest.data == seeded.manifest
        assert manifest.digest == seeded.digest
        assert manifest.media_type == seeded.media_type

    def test_manifest_by_digest_is_the_pushed_bytes(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        manifest = remote.get_manifest(seeded.repository, seeded.digest)
        assert (manifest.data, manifest.digest) == (seeded.manifest, seeded.digest)

    def test_head_manifest_gives_digest_size_and_type(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        info = remote.head_manifest(seeded.repository, seeded.tag)
        assert (info.digest, info.size, info.media_type) == (
            seeded.digest,
            len(seeded.manifest),
            OCI_MANIFEST,
        )

    def test_an_unknown_tag_is_not_found(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        with pytest.raises(UpstreamNotFound):
            remote.get_manifest(seeded.repository, "no-such-tag")
        with pytest.raises(UpstreamNotFound):
            remote.head_manifest(seeded.repository, "no-such-tag")

    def test_an_unknown_repository_is_not_found(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        with pytest.raises(UpstreamNotFound):
            remote.get_manifest("conformance/absent", seeded.tag)

    def test_bad_names_and_digests_never_leave_the_client(self, remote: RemoteRegistry) -> None:
        for bad in ("../x", "A/b", "a//b", "a b"):
            with pytest.raises(NameInvalid):
                remote.get_manifest(bad, "v1")
        with pytest.raises(DigestInvalid):
            remote.open_blob("conformance/app", "sha256:../../etc")
        with pytest.raises((UpstreamError, DigestInvalid)):
            remote.get_manifest("conformance/app", "v1/../../x")

    # --- blobs ----------------------------------------------------------------------------------
    def test_head_blob_gives_its_size(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        assert remote.head_blob(seeded.repository, _digest(seeded.layer)) == len(seeded.layer)

    def test_a_blob_streams_in_bounded_chunks(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        received = bytearray()
        with remote.open_blob(seeded.repository, _digest(seeded.layer)) as stream:
            assert stream.offset == 0
            assert stream.size in (len(seeded.layer), None)
            for chunk in stream.chunks(256 * 1024):
                assert len(chunk) <= 256 * 1024
                received += chunk
        assert bytes(received) == seeded.layer

    def test_a_blob_resumes_from_an_offset(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        offset = len(seeded.layer) - 12345
        with remote.open_blob(seeded.repository, _digest(seeded.layer), offset) as stream:
            assert stream.offset in (0, offset)  # 0: the upstream ignored the range, the caller skips
            body = b"".join(stream.chunks())
        assert body[offset - stream.offset :] == seeded.layer[offset:]

    def test_an_unknown_blob_is_not_found(self, remote: RemoteRegistry, seeded: Seeded) -> None:
        missing = _digest(b"never pushed")
        with pytest.raises(UpstreamNotFound):
            remote.head_blob(seeded.repository, missing)
        with pytest.raises(UpstreamNotFound):
            remote.open_blob(seeded.repository, missing)

    # --- tags -----------------------------------------------------------------------------------
    def test_tags_are_listed(self, remote: RemoteRegistry, upstream: tuple[RemoteRegistry, Push]) -> None:
        content = image("conformance/tags", "a", layer_size=100)
        for tag in ("a", "b", "c"):
            upstream[1](content.repository, tag, content.manifest, content.media_type,
                        [content.config, content.layer])  # fmt: skip
        assert sorted(remote.list_tags(content.repository)) == ["a", "b", "c"]
        assert len(remote.list_tags(content.repository, limit=2)) == 2

    def test_tags_of_an_unknown_repository_are_not_found(self, remote: RemoteRegistry) -> None:
        with pytest.raises(UpstreamNotFound):
            remote.list_tags("conformance/never")
