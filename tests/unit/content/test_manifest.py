"""Manifest parsing against the OCI image spec (manifest, image index, descriptor) and Docker schema 2."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.content import mediatypes as mt
from dockyard.content.manifest import MAX_MANIFEST_SIZE, Descriptor, parse_manifest
from dockyard.errors import ManifestInvalid, ManifestTooLarge

CONFIG_DIGEST = "sha256:" + "c" * 64
LAYER_DIGESTS = ["sha256:" + ch * 64 for ch in "0123"]
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
PLATFORM = {"architecture": "amd64", "os": "linux"}


def descriptor(media_type: str, digest: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_manifest(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(mt.OCI_CONFIG, CONFIG_DIGEST, 7023),
        "layers": [descriptor(LAYER_TYPE, LAYER_DIGESTS[0], 32654)],
    }
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not DROP}


def oci_index(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            descriptor(mt.OCI_MANIFEST, LAYER_DIGESTS[0], platform={"architecture": "amd64", "os": "linux"}),
            descriptor(mt.OCI_MANIFEST, LAYER_DIGESTS[1], platform={"architecture": "arm64", "os": "linux"}),
        ],
    }
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not DROP}


DROP: Any = object()


def parse(document: Any, content_type: str | None = None) -> Any:
    return parse_manifest(json.dumps(document).encode(), content_type)


def refused(document: Any, content_type: str | None = None, match: str | None = None) -> ManifestInvalid:
    with pytest.raises(ManifestInvalid, match=match) as caught:
        parse(document, content_type)
    return caught.value


# --- the four supported kinds -----------------------------------------------------------------


def test_oci_image_manifest() -> None:
    parsed = parse(oci_manifest(annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}))
    assert parsed.media_type == mt.OCI_MANIFEST
    assert not parsed.is_index
    assert parsed.config == Descriptor(mt.OCI_CONFIG, CONFIG_DIGEST, 7023)
    assert [blob.digest for blob in parsed.blobs] == [CONFIG_DIGEST, LAYER_DIGESTS[0]]
    assert parsed.manifests == ()
    assert parsed.subject is None
    assert parsed.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


def test_oci_index() -> None:
    parsed = parse(oci_index(annotations={"a": "b"}))
    assert parsed.media_type == mt.OCI_INDEX
    assert parsed.is_index
    assert parsed.config is None
    assert parsed.blobs == ()
    assert [child.digest for child in parsed.manifests] == LAYER_DIGESTS[:2]
    assert parsed.manifests[1].platform == {"architecture": "arm64", "os": "linux"}
    assert parsed.annotations == {"a": "b"}
    assert parsed.artifact_type is None


def test_docker_schema2_manifest() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, CONFIG_DIGEST, 1469),
        "layers": [descriptor(DOCKER_LAYER, digest, 100 + i) for i, digest in enumerate(LAYER_DIGESTS)],
    }
    parsed = parse(document, mt.DOCKER_MANIFEST)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert [blob.digest for blob in parsed.blobs] == [CONFIG_DIGEST, *LAYER_DIGESTS]
    assert [blob.size for blob in parsed.blobs] == [1469, 100, 101, 102, 103]
    # Only OCI image manifests take their artifact type from the config.
    assert parsed.artifact_type is None


def test_docker_manifest_list() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            descriptor(mt.DOCKER_MANIFEST, LAYER_DIGESTS[0], platform={"os": "linux", "architecture": "arm"})
        ],
    }
    parsed = parse(document, mt.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == mt.DOCKER_MANIFEST_LIST
    assert parsed.is_index
    assert [child.media_type for child in parsed.manifests] == [mt.DOCKER_MANIFEST]


def test_layers_keep_stack_order_and_config_comes_first() -> None:
    layers = [descriptor(LAYER_TYPE, digest, i) for i, digest in enumerate(reversed(LAYER_DIGESTS))]
    parsed = parse(oci_manifest(layers=layers))
    assert [blob.digest for blob in parsed.blobs] == [CONFIG_DIGEST, *reversed(LAYER_DIGESTS)]


@pytest.mark.parametrize("layers", [DROP, [], None], ids=["absent", "empty", "null"])
def test_manifest_without_layers_is_an_artifact_with_only_its_config(layers: Any) -> None:
    parsed = parse(oci_manifest(layers=layers))
    assert [blob.digest for blob in parsed.blobs] == [CONFIG_DIGEST]


# --- media type: declared, inferred, Content-Type --------------------------------------------


def test_absent_media_type_is_inferred_from_the_shape() -> None:
    assert parse(oci_manifest(mediaType=DROP)).media_type == mt.OCI_MANIFEST
    assert parse(oci_index(mediaType=DROP)).media_type == mt.OCI_INDEX


def test_absent_media_type_is_taken_from_content_type() -> None:
    document = oci_manifest(mediaType=DROP)
    assert parse(document, mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST
    assert parse(oci_index(mediaType=DROP), mt.DOCKER_MANIFEST_LIST).media_type == mt.DOCKER_MANIFEST_LIST


@pytest.mark.parametrize(
    "content_type",
    [
        mt.OCI_MANIFEST,
        mt.OCI_MANIFEST + "; charset=utf-8",
        mt.OCI_MANIFEST.upper(),
        f"  {mt.OCI_MANIFEST}  ",
        "application/json",  # generic types do not contradict the declared one
        "application/octet-stream",
        None,
        "",
    ],
)
def test_content_types_compatible_with_the_declared_media_type(content_type: str | None) -> None:
    assert parse(oci_manifest(), content_type).media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize(
    ("declared", "content_type"),
    [
        (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST),
        (mt.OCI_MANIFEST, mt.OCI_INDEX),
        (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST),
        (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST),
    ],
)
def test_media_type_contradicting_content_type_is_refused(declared: str, content_type: str) -> None:
    document = oci_index(mediaType=declared) if "index" in declared else oci_manifest(mediaType=declared)
    refused(document, content_type, match="does not match Content-Type")


@pytest.mark.parametrize(
    "media_type",
    [
        mt.OCI_CONFIG,
        mt.OCI_EMPTY,
        "application/json",
        "text/plain",
        "application/vnd.oci.image.manifest.v2+json",
    ],
)
def test_unsupported_media_types_are_refused(media_type: str) -> None:
    refused(oci_manifest(mediaType=media_type), match="unsupported manifest media type")


def test_media_type_must_be_a_string() -> None:
    refused(oci_manifest(mediaType=2), match="mediaType must be a string")
    refused(oci_manifest(mediaType=[mt.OCI_MANIFEST]), match="mediaType must be a string")


def test_declared_index_without_manifests_is_refused() -> None:
    refused(oci_index(manifests=DROP), match="manifests is required")
    refused(oci_index(manifests={"a": 1}), match="manifests must be a list")


def test_declared_image_manifest_shaped_like_an_index_is_refused() -> None:
    document = oci_index(mediaType=mt.OCI_MANIFEST)
    refused(document, match="config")


# --- schema versions --------------------------------------------------------------------------

SCHEMA1 = {
    "schemaVersion": 1,
    "name": "library/hello",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": LAYER_DIGESTS[0]}],
    "history": [{"v1Compatibility": "{}"}],
    "signatures": [{"header": {}, "signature": "x", "protected": "y"}],
}


@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        (SCHEMA1, None),
        (SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED),
        (SCHEMA1, mt.DOCKER_SCHEMA1),
        ({**SCHEMA1, "mediaType": mt.DOCKER_SCHEMA1_SIGNED}, None),
        (oci_manifest(), mt.DOCKER_SCHEMA1_SIGNED),  # the client says schema 1
    ],
)
def test_schema1_is_refused_with_a_way_forward(document: dict[str, Any], content_type: str | None) -> None:
    error = refused(document, content_type)
    assert "schema 1" in error.message
    assert "schema 2 or OCI" in error.message


@pytest.mark.parametrize("version", [DROP, 0, 3, "2", 2.0, 2.5, True, None, [2]])
def test_schema_version_must_be_the_integer_2(version: Any) -> None:
    refused(oci_manifest(schemaVersion=version))
    refused(oci_index(schemaVersion=version))


# --- descriptors ------------------------------------------------------------------------------


def test_config_is_required() -> None:
    refused(oci_manifest(config=DROP), match="config")
    refused(oci_manifest(config=None), match="config")
    refused(oci_manifest(config=CONFIG_DIGEST), match="config must be a descriptor object")
    refused(oci_manifest(config=[]), match="config must be a descriptor object")


BAD_DESCRIPTORS: list[tuple[dict[str, Any], str]] = [
    ({"digest": CONFIG_DIGEST, "size": 1}, "mediaType is required"),
    ({"mediaType": "", "digest": CONFIG_DIGEST, "size": 1}, "mediaType is required"),
    ({"mediaType": 1, "digest": CONFIG_DIGEST, "size": 1}, "mediaType is required"),
    ({"mediaType": LAYER_TYPE, "size": 1}, "digest is required"),
    ({"mediaType": LAYER_TYPE, "digest": None, "size": 1}, "digest is required"),
    ({"mediaType": LAYER_TYPE, "digest": "sha256:abc", "size": 1}, "digest"),
    ({"mediaType": LAYER_TYPE, "digest": "sha256:" + "A" * 64, "size": 1}, "digest"),
    ({"mediaType": LAYER_TYPE, "digest": "md5:d41d8cd98f00b204e9800998ecf8427e", "size": 1}, "digest"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": None}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": "10"}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": -1}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1.5}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 10.0}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": True}, "size"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 2**63}, "size"),  # beyond int64
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": "http://x"}, "urls"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": {}}, "urls"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": [1]}, "urls"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": "linux"}, "platform"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "artifactType": 3}, "artifactType"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "annotations": {"a": 1}}, "annotations"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "annotations": ["a"]}, "annotations"),
    # mediaType and artifactType are RFC 6838 type/subtype names (the image spec's schema pattern).
    ({"mediaType": "tar", "digest": CONFIG_DIGEST, "size": 1}, "not a media type"),
    ({"mediaType": "application/x tar", "digest": CONFIG_DIGEST, "size": 1}, "not a media type"),
    ({"mediaType": "/tar", "digest": CONFIG_DIGEST, "size": 1}, "not a media type"),
    ({"mediaType": "a/b" + "c" * 127, "digest": CONFIG_DIGEST, "size": 1}, "not a media type"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "artifactType": "sbom"}, "artifactType"),
    # urls: absolute URIs (RFC 3986).
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": ["layer.tar"]}, "URI"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": ["http://a b"]}, "URI"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": ["http://a/%zz"]}, "URI"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "urls": ["http://a/\n"]}, "URI"),
    # data: base64 of exactly the content the digest and size describe.
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "data": 7}, "data"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "data": "e30=="}, "data"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "data": "é30="}, "data"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 2, "data": "e30="}, "data"),  # not {}
    ({"mediaType": LAYER_TYPE, "digest": EMPTY_DIGEST, "size": 3, "data": "e30="}, "data"),  # size
    # platform: os and architecture strings, os.version and variant strings, features lists of strings.
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": ["linux"]}, "platform"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": {"os": "linux"}},
     "architecture"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": {"architecture": "amd64"}},
     "platform.os"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": {**PLATFORM, "os": 1}}, "os"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1,
      "platform": {**PLATFORM, "architecture": ["amd64"]}}, "architecture"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": {**PLATFORM, "variant": 7}},
     "variant"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1,
      "platform": {**PLATFORM, "os.version": 10}}, "os.version"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1,
      "platform": {**PLATFORM, "os.features": "win32k"}}, "os.features"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1,
      "platform": {**PLATFORM, "os.features": [1]}}, "os.features"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1,
      "platform": {**PLATFORM, "features": [{}]}}, "features"),
    # A field spelled in another case is that field to Go's decoder, and unknown to ours.
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "Digest": LAYER_DIGESTS[1]}, "case"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "URLs": ["https://x/y"]}, "urls"),
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "\u017fize": 2}, "size"),  # long s
    ({"mediaType": LAYER_TYPE, "digest": CONFIG_DIGEST, "size": 1, "platform": {**PLATFORM, "OS": "windows"}},
     "case"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_DESCRIPTORS)
def test_bad_descriptors_are_refused_wherever_they_appear(bad: dict[str, Any], reason: str) -> None:
    # The error names the field, so a user can find it in a large manifest.
    assert "config" in refused(oci_manifest(config=bad), match=reason).message
    good = descriptor(LAYER_TYPE, LAYER_DIGESTS[0])
    assert "layers[1]" in refused(oci_manifest(layers=[good, bad]), match=reason).message
    assert "subject" in refused(oci_manifest(subject=bad), match=reason).message
    child = descriptor(mt.OCI_MANIFEST, LAYER_DIGESTS[0])
    assert "manifests[1]" in refused(oci_index(manifests=[child, bad]), match=reason).message


@pytest.mark.parametrize("item", [None, 1, "sha256:" + "a" * 64, [], True])
def test_list_items_must_be_descriptor_objects(item: Any) -> None:
    refused(oci_manifest(layers=[item]), match=r"layers\[0\] must be a descriptor object")
    refused(oci_index(manifests=[item]), match=r"manifests\[0\] must be a descriptor object")


def test_layers_must_be_a_list() -> None:
    refused(
        oci_manifest(layers={"0": descriptor(LAYER_TYPE, LAYER_DIGESTS[0])}), match="layers must be a list"
    )
    refused(oci_manifest(layers="none"), match="layers must be a list")


def test_sha512_and_zero_size_descriptors_are_accepted() -> None:
    sha512 = "sha512:" + "e" * 128
    parsed = parse(oci_manifest(layers=[descriptor(LAYER_TYPE, sha512, 0)]))
    assert parsed.blobs[1] == Descriptor(LAYER_TYPE, sha512, 0)


def test_descriptor_sizes_up_to_int64_are_accepted() -> None:
    parsed = parse(oci_manifest(layers=[descriptor(LAYER_TYPE, LAYER_DIGESTS[0], 2**63 - 1)]))
    assert parsed.blobs[1].size == 2**63 - 1


def test_unknown_descriptor_fields_and_layer_media_types_are_ignored() -> None:
    # "An encountered mediaType that is unknown to the implementation MUST be ignored."
    layer = descriptor("application/x-whatever", LAYER_DIGESTS[0], 5, future={"x": 1})
    parsed = parse(oci_manifest(layers=[layer], future=True))
    assert parsed.blobs[1] == Descriptor("application/x-whatever", LAYER_DIGESTS[0], 5)


def test_foreign_layers_with_urls_are_not_registry_blobs() -> None:
    foreign = descriptor(DOCKER_FOREIGN, LAYER_DIGESTS[0], 5, urls=["https://example.com/layer"])
    local = descriptor(DOCKER_LAYER, LAYER_DIGESTS[1], 6)
    nondistributable = descriptor(
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        LAYER_DIGESTS[2],
        7,
        urls=["https://example.com/a", "https://mirror.example.com/a"],
    )
    document = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, CONFIG_DIGEST),
        "layers": [foreign, local, nondistributable],
    }
    parsed = parse(document)
    assert [blob.digest for blob in parsed.blobs] == [CONFIG_DIGEST, LAYER_DIGESTS[1]]


def test_layer_with_empty_urls_is_a_registry_blob() -> None:
    parsed = parse(oci_manifest(layers=[descriptor(LAYER_TYPE, LAYER_DIGESTS[0], urls=[])]))
    assert [blob.digest for blob in parsed.blobs] == [CONFIG_DIGEST, LAYER_DIGESTS[0]]


# --- artifactType and subject (OCI 1.1, referrers) --------------------------------------------


def test_artifact_type_is_explicit_when_given() -> None:
    document = oci_manifest(
        artifactType="application/vnd.example.sbom",
        config=descriptor(mt.OCI_EMPTY, EMPTY_DIGEST, 2),
        layers=[descriptor(mt.OCI_EMPTY, EMPTY_DIGEST, 2)],
    )
    parsed = parse(document)
    assert parsed.artifact_type == "application/vnd.example.sbom"
    # The empty descriptor is a real blob the registry must hold (once, but listed as referenced).
    assert [blob.digest for blob in parsed.blobs] == [EMPTY_DIGEST, EMPTY_DIGEST]


def test_artifact_type_falls_back_to_the_config_media_type() -> None:
    # distribution-spec, referrers: "If the artifactType is empty or missing in an image manifest,
    # the value of artifactType MUST be set to the config descriptor mediaType value."
    assert parse(oci_manifest()).artifact_type == mt.OCI_CONFIG
    assert parse(oci_manifest(artifactType="")).artifact_type == mt.OCI_CONFIG
    signature = oci_manifest(
        config=descriptor("application/vnd.dev.cosign.artifact.sig.v1+json", CONFIG_DIGEST)
    )
    assert parse(signature).artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"


def test_index_artifact_type_is_only_explicit() -> None:
    assert parse(oci_index()).artifact_type is None
    assert parse(oci_index(artifactType="application/vnd.example")).artifact_type == "application/vnd.example"


@pytest.mark.parametrize("value", [1, True, ["a"], {"a": "b"}])
def test_artifact_type_must_be_a_string(value: Any) -> None:
    refused(oci_manifest(artifactType=value), match="artifactType must be a string")
    refused(oci_index(artifactType=value), match="artifactType must be a string")


def test_subject_is_parsed_for_manifests_and_indexes() -> None:
    subject = descriptor(mt.OCI_MANIFEST, LAYER_DIGESTS[3], 1234)
    for document in (oci_manifest(subject=subject), oci_index(subject=subject)):
        parsed = parse(document)
        assert parsed.subject == Descriptor(mt.OCI_MANIFEST, LAYER_DIGESTS[3], 1234)
        # The subject need not exist in the repository, so it is never a required blob or child.
        assert parsed.subject.digest not in {d.digest for d in (*parsed.blobs, *parsed.manifests)}


@pytest.mark.parametrize("subject", [None, "sha256:" + "a" * 64, [], 1])
def test_subject_must_be_a_descriptor(subject: Any) -> None:
    refused(oci_manifest(subject=subject), match="subject")


# --- annotations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotations",
    [{"a": 1}, {"a": None}, {"a": ["b"]}, {"a": {"b": "c"}}, {"a": True}, ["a", "b"], "a=b", 1],
)
def test_annotations_must_map_strings_to_strings(annotations: Any) -> None:
    refused(oci_manifest(annotations=annotations), match="annotations must map strings to strings")
    refused(oci_index(annotations=annotations), match="annotations must map strings to strings")


def test_empty_and_absent_annotations_are_empty() -> None:
    assert parse(oci_manifest(annotations={})).annotations == {}
    assert parse(oci_manifest()).annotations == {}
    assert parse(oci_manifest(annotations=None)).annotations == {}


def test_descriptor_annotations_and_platform_are_kept() -> None:
    child = descriptor(
        mt.OCI_MANIFEST,
        LAYER_DIGESTS[0],
        annotations={"vnd.example": "x"},
        platform={"os": "linux", "architecture": "arm", "variant": "v7"},
        artifactType="application/vnd.example",
    )
    parsed = parse(oci_index(manifests=[child]))
    assert parsed.manifests[0].to_json() == child


# --- the body itself --------------------------------------------------------------------------


def test_manifest_of_exactly_4_mib_is_accepted_and_one_byte_more_is_too_large() -> None:
    body = json.dumps(oci_manifest()).encode()
    at_limit = body + b" " * (MAX_MANIFEST_SIZE - len(body))
    assert len(at_limit) == 4 * 1024 * 1024
    assert parse_manifest(at_limit).media_type == mt.OCI_MANIFEST
    with pytest.raises(ManifestTooLarge):
        parse_manifest(at_limit + b" ")


def test_too_large_is_reported_before_parsing() -> None:
    with pytest.raises(ManifestTooLarge, match="limit"):
        parse_manifest(b"x" * (MAX_MANIFEST_SIZE + 1))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"{",
        b"not json",
        b"{'schemaVersion': 2}",
        b'{"schemaVersion": 2,}',
        json.dumps(oci_manifest()).encode()[:-1],  # truncated
        b"\xff\xfe{}",
        b'{"schemaVersion": 2, "mediaType": "\xff"}',  # invalid UTF-8
    ],
)
def test_non_json_is_invalid(body: bytes) -> None:
    with pytest.raises(ManifestInvalid, match="not valid JSON"):
        parse_manifest(body)


@pytest.mark.parametrize("body", [b"[]", b"[{}]", b'"manifest"', b"2", b"null", b"true"])
def test_json_that_is_not_an_object_is_invalid(body: bytes) -> None:
    with pytest.raises(ManifestInvalid, match="must be a JSON object"):
        parse_manifest(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b'{"a":' * 200_000,
        b'{"schemaVersion": 2, "annotations": {"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}",
    ],
)
def test_deep_nesting_is_invalid_not_a_crash(body: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        parse_manifest(body)


def test_moderate_nesting_in_unknown_fields_is_fine() -> None:
    nested: Any = "leaf"
    for _ in range(200):
        nested = {"n": nested}
    assert parse(oci_manifest(extension=nested)).media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize(
    "where",
    ["annotation value", "annotation key", "config mediaType", "artifactType", "layer annotation"],
)
def test_unpaired_surrogate_escapes_are_invalid(where: str) -> None:
    # JSON allows "\ud800", but it is not Unicode: such strings cannot be stored or sent as UTF-8.
    bad = "x\ud800"
    document = {
        "annotation value": oci_manifest(annotations={"a": bad}),
        "annotation key": oci_manifest(annotations={bad: "a"}),
        "config mediaType": oci_manifest(config=descriptor(bad, CONFIG_DIGEST)),
        "artifactType": oci_manifest(artifactType=bad),
        "layer annotation": oci_manifest(
            layers=[descriptor(LAYER_TYPE, LAYER_DIGESTS[0], annotations={"a": bad})]
        ),
    }[where]
    body = json.dumps(document).encode()
    assert b"\\ud800" in body
    with pytest.raises(ManifestInvalid, match="surrogate"):
        parse_manifest(body)


def test_paired_surrogate_escapes_and_raw_unicode_are_fine() -> None:
    document = oci_manifest(annotations={"emoji": "\U0001f433", "name": "café"})
    for ensure_ascii in (True, False):
        body = json.dumps(document, ensure_ascii=ensure_ascii).encode()
        assert parse_manifest(body).annotations == {"emoji": "\U0001f433", "name": "café"}


def test_nesting_around_the_recursion_limit_never_escapes_as_a_crash() -> None:
    # json.loads and the surrogate check both recurse; whichever gives up first must say "invalid".
    limit = sys.getrecursionlimit()
    for depth in range(limit - 60, limit + 10):
        body = b'{"schemaVersion": 2, "a": "\\u0041", "n": ' + b"[" * depth + b"]" * depth + b"}"
        with pytest.raises(ManifestInvalid):
            parse_manifest(body)


# --- documents two parsers could read differently ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"schemaVersion": 2, "schemaVersion": 1}', "schemaVersion"),
        (b'{"schemaVersion": 2, "mediaType": "%s", "config": {"mediaType": "%s", "digest": "%s", "size": 1,'
         b' "digest": "%s"}}' % (mt.OCI_MANIFEST.encode(), mt.OCI_CONFIG.encode(), CONFIG_DIGEST.encode(),
                                 LAYER_DIGESTS[0].encode()), "digest"),
        (b'{"schemaVersion": 2, "annotations": {"a": "1", "a": "2"}}', "a"),
        (b'{"schemaVersion": 2, "x-ext": {"deep": [{"k": 1, "k": 2}]}}', "k"),
    ],
)
def test_duplicate_keys_anywhere_are_refused(body: bytes, key: str) -> None:
    # Go's decoder takes the last value, others the first: a registry and its clients would disagree
    # about which blob a descriptor names, or which annotations an artifact has.
    with pytest.raises(ManifestInvalid, match="twice") as caught:
        parse_manifest(body)
    assert caught.value.detail == {"key": key}


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + json.dumps(oci_manifest()).encode(),  # a UTF-8 byte-order mark
        json.dumps(oci_manifest()).encode("utf-16"),
        json.dumps(oci_manifest()).encode("utf-32-le"),
        b'{"schemaVersion": 2, "x": NaN}',
        b'{"schemaVersion": 2, "x": Infinity}',
        b'{"schemaVersion": 2, "x": -Infinity}',
    ],
    ids=["bom", "utf-16", "utf-32", "nan", "infinity", "minus-infinity"],
)
def test_json_that_only_python_reads_is_invalid(body: bytes) -> None:
    with pytest.raises(ManifestInvalid, match="not valid JSON"):
        parse_manifest(body)


@pytest.mark.parametrize(
    "key", ["SchemaVersion", "Layers", "MANIFESTS", "Subject", "ANNOTATIONS", "artifacttype"]
)
def test_manifest_fields_spelled_in_another_case_are_refused(key: str) -> None:
    document = oci_manifest()
    document[key] = document.get(key[0].lower() + key[1:], [])
    with pytest.raises(ManifestInvalid, match="case-sensitive") as caught:
        parse(document)
    assert caught.value.detail["key"] == key


def test_field_like_keys_elsewhere_are_fine() -> None:
    # Annotations and unknown objects are free-form: a key like a field name is just a key there.
    parsed = parse(oci_manifest(annotations={"Digest": "x", "OS": "y"}, extension={"Size": 1, "size": 2}))
    assert parsed.annotations == {"Digest": "x", "OS": "y"}


def test_descriptors_with_every_optional_field_well_formed_are_accepted() -> None:
    child = descriptor(
        mt.OCI_MANIFEST,
        EMPTY_DIGEST,
        2,
        data="e30=",
        urls=["https://example.com/v2/a/manifests/x", "http://[::1]:5000/a%20b?c=d#e"],
        platform={
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.17763.1879",
            "os.features": ["win32k"],
            "variant": "",
            "features": [],
            "future": {"x": 1},
        },
        artifactType="application/vnd.example+type",
    )
    parsed = parse(oci_index(manifests=[child]))
    assert parsed.manifests[0].platform == child["platform"]
    sha512 = "sha512:" + hashlib.sha512(b"{}").hexdigest()
    layer = descriptor(LAYER_TYPE, sha512, 2, data="e30=")
    assert parse(oci_manifest(layers=[layer])).blobs[1].digest == sha512


# --- properties -------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
MANIFEST_KEYS = st.sampled_from(
    ["schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "annotations", "artifactType"]
)


@given(st.dictionaries(MANIFEST_KEYS, JSON_VALUES, max_size=8), st.sampled_from([None, *mt.MANIFEST_TYPES]))
def test_any_json_object_parses_or_is_manifest_invalid(
    document: dict[str, Any], content_type: str | None
) -> None:
    try:
        parsed = parse(document, content_type)
    except ManifestInvalid:
        return
    assert parsed.media_type in mt.MANIFEST_TYPES
    assert document["schemaVersion"] == 2


@given(
    st.sampled_from(["config", "layers", "subject", "annotations", "artifactType", "mediaType"]),
    JSON_VALUES,
)
def test_replacing_any_field_of_a_valid_manifest_never_crashes(field: str, value: Any) -> None:
    try:
        parsed = parse(oci_manifest(**{field: value}))
    except ManifestInvalid:
        return
    assert parsed.config is not None
    assert parsed.blobs[0] == parsed.config


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_are_manifest_invalid(body: bytes) -> None:
    try:
        parsed = parse_manifest(body)
    except ManifestInvalid:
        return
    assert parsed.media_type in mt.MANIFEST_TYPES


@given(
    st.lists(
        st.tuples(st.sampled_from(LAYER_DIGESTS), st.integers(0, 2**40), st.booleans()),
        min_size=0,
        max_size=6,
    )
)
def test_blobs_are_the_config_then_exactly_the_layers_without_urls(
    layers: list[tuple[str, int, bool]],
) -> None:
    document = oci_manifest(
        layers=[
            descriptor(LAYER_TYPE, digest, size, **({"urls": ["https://example.com/x"]} if foreign else {}))
            for digest, size, foreign in layers
        ]
    )
    parsed = parse(document)
    expected = [(CONFIG_DIGEST, 7023)] + [(digest, size) for digest, size, foreign in layers if not foreign]
    assert [(blob.digest, blob.size) for blob in parsed.blobs] == expected
