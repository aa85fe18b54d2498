"""Push and pull of manifests: the four manifest types, artifacts, subjects, and refusals."""

from __future__ import annotations

import json

import pytest

from tests.support.ociclient import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_SIGNED,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    PushedManifest,
    assert_error,
    describe,
    descriptor,
    digest_of,
    empty_descriptor,
    image_manifest,
    index_manifest,
)

PLATFORM = {"architecture": "amd64", "os": "linux"}


def assert_pullable(oci: OCIClient, repo: str, reference: str, pushed: PushedManifest,
                    accept: str | None = None) -> None:
    """GET returns the exact bytes with the manifest's media type; HEAD the same headers and no body."""
    response = oci.get_manifest(repo, reference, accept)
    assert response.status_code == 200, describe(response)
    assert response.content == pushed.body
    assert response.headers["Content-Type"] == pushed.media_type
    assert response.headers["Docker-Content-Digest"] == pushed.digest
    assert response.headers["Content-Length"] == str(len(pushed.body))
    head = oci.get_manifest(repo, reference, accept, method="HEAD")
    assert head.status_code == 200, describe(head)
    assert head.content == b""
    assert head.headers["Content-Type"] == pushed.media_type
    assert head.headers["Docker-Content-Digest"] == pushed.digest
    assert head.headers["Content-Length"] == str(len(pushed.body))


def docker_image(oci: OCIClient, repo: str) -> tuple[bytes, str]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
    layer = f"docker layer {repo}".encode()
    oci.push_blob(repo, config)
    oci.push_blob(repo, layer)
    body = image_manifest(descriptor(DOCKER_CONFIG, config), [descriptor(DOCKER_LAYER, layer)],
                          media_type=DOCKER_MANIFEST)
    return body, DOCKER_MANIFEST


def test_put_by_tag_answers_201_with_location_and_digest(oci: OCIClient, repo_name: str) -> None:
    config, layer = b'{"os":"linux"}', b"layer bytes"
    oci.push_blob(repo_name, config)
    oci.push_blob(repo_name, layer)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
    response = oci.put_manifest(repo_name, "v1", body, OCI_MANIFEST)
    assert response.status_code == 201, describe(response)
    assert response.headers["Docker-Content-Digest"] == digest_of(body)
    pulled = oci.http.get(oci.url(response.headers["Location"]), headers={"Accept": OCI_MANIFEST})
    assert pulled.status_code == 200, describe(pulled)
    assert pulled.content == body
    pushed = PushedManifest(body, digest_of(body), OCI_MANIFEST)
    assert_pullable(oci, repo_name, "v1", pushed)
    assert_pullable(oci, repo_name, pushed.digest, pushed)
    assert_pullable(oci, repo_name, "v1", pushed, accept=OCI_MANIFEST)


def test_put_by_digest(oci: OCIClient, repo_name: str) -> None:
    pushed = oci.push_image(repo_name)  # no tag: PUT /manifests/<digest>
    assert_pullable(oci, repo_name, pushed.digest, pushed)
    assert oci.tags(repo_name) == []


def test_manifest_with_no_layers_is_accepted(oci: OCIClient, repo_name: str) -> None:
    config = b'{"layers":"none"}'
    oci.push_blob(repo_name, config)
    body = image_manifest(descriptor(OCI_CONFIG, config), [])
    pushed = oci.push_manifest(repo_name, "empty", body, OCI_MANIFEST)
    assert_pullable(oci, repo_name, "empty", pushed)


def test_retagging_moves_the_tag(oci: OCIClient, repo_name: str) -> None:
    first = oci.push_image(repo_name, "moving", seed="one")
    second = oci.push_image(repo_name, "moving", seed="two")
    assert first.digest != second.digest
    assert_pullable(oci, repo_name, "moving", second)
    assert_pullable(oci, repo_name, first.digest, first)  # the old manifest stays, by digest


def test_docker_schema2_manifest(oci: OCIClient, repo_name: str) -> None:
    body, media_type = docker_image(oci, repo_name)
    pushed = oci.push_manifest(repo_name, "docker", body, media_type)
    assert_pullable(oci, repo_name, "docker", pushed)
    assert_pullable(oci, repo_name, pushed.digest, pushed, accept=DOCKER_MANIFEST)


def test_oci_index(oci: OCIClient, repo_name: str) -> None:
    amd = oci.push_image(repo_name, seed="amd64")
    arm = oci.push_image(repo_name, seed="arm64")
    body = index_manifest([amd.descriptor(platform=PLATFORM),
                           arm.descriptor(platform={"architecture": "arm64", "os": "linux"})])
    pushed = oci.push_manifest(repo_name, "multi", body, OCI_INDEX)
    assert_pullable(oci, repo_name, "multi", pushed)
    assert_pullable(oci, repo_name, pushed.digest, pushed, accept=OCI_INDEX)


def test_docker_manifest_list(oci: OCIClient, repo_name: str) -> None:
    body, media_type = docker_image(oci, repo_name)
    child = oci.push_manifest(repo_name, digest_of(body), body, media_type)
    listing = index_manifest([child.descriptor(platform=PLATFORM)], media_type=DOCKER_MANIFEST_LIST)
    pushed = oci.push_manifest(repo_name, "list", listing, DOCKER_MANIFEST_LIST)
    assert_pullable(oci, repo_name, "list", pushed)
    assert_pullable(oci, repo_name, pushed.digest, pushed, accept=DOCKER_MANIFEST_LIST)


def test_artifact_with_custom_config_media_type(oci: OCIClient, repo_name: str) -> None:
    config = b'{"tool":"sbom-maker"}'
    layer = b'{"packages":[]}'
    oci.push_blob(repo_name, config)
    oci.push_blob(repo_name, layer)
    body = image_manifest(
        descriptor("application/vnd.example.sbom.config.v1+json", config),
        [descriptor("application/vnd.example.sbom.v1+json", layer)],
        artifact_type="application/vnd.example.sbom.v1",
    )
    pushed = oci.push_manifest(repo_name, "sbom", body, OCI_MANIFEST)
    assert_pullable(oci, repo_name, "sbom", pushed)


def test_artifact_with_empty_config_descriptor(oci: OCIClient, repo_name: str) -> None:
    assert digest_of(EMPTY_JSON) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    oci.push_blob(repo_name, EMPTY_JSON)
    payload = b"a signature"
    oci.push_blob(repo_name, payload)
    body = image_manifest(empty_descriptor(), [descriptor("application/vnd.example.signature.v1", payload)],
                          artifact_type="application/vnd.example.signature.v1")
    pushed = oci.push_manifest(repo_name, "sig", body, OCI_MANIFEST)
    assert_pullable(oci, repo_name, "sig", pushed)


def test_subject_that_does_not_exist_yet_is_accepted_with_oci_subject(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, EMPTY_JSON)
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"future subject"), "size": 14}
    body = image_manifest(empty_descriptor(), [empty_descriptor()], artifact_type="application/vnd.example.x",
                          subject=subject)
    response = oci.put_manifest(repo_name, digest_of(body), body, OCI_MANIFEST)
    assert response.status_code == 201, describe(response)
    assert response.headers["OCI-Subject"] == subject["digest"]


def test_missing_layer_is_manifest_blob_unknown(oci: OCIClient, repo_name: str) -> None:
    config = b'{"has":"config"}'
    oci.push_blob(repo_name, config)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, b"never uploaded layer")])
    assert_error(oci.put_manifest(repo_name, "broken", body, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(oci.get_manifest(repo_name, "broken"), 404, "MANIFEST_UNKNOWN")


def test_missing_config_blob_is_manifest_blob_unknown(oci: OCIClient, repo_name: str) -> None:
    layer = b"present layer"
    oci.push_blob(repo_name, layer)
    body = image_manifest(descriptor(OCI_CONFIG, b'{"never":"uploaded"}'), [descriptor(OCI_LAYER, layer)])
    assert_error(oci.put_manifest(repo_name, "broken", body, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(oci.get_manifest(repo_name, "broken"), 404, "MANIFEST_UNKNOWN")


def test_blob_of_another_repository_does_not_satisfy_a_manifest(oci: OCIClient, repo_name: str) -> None:
    config, layer = b'{"elsewhere":true}', b"layer elsewhere"
    oci.push_blob(f"{repo_name}-other", config)
    oci.push_blob(f"{repo_name}-other", layer)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
    assert_error(oci.put_manifest(repo_name, "borrowed", body, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_unknown_child_is_manifest_blob_unknown(oci: OCIClient, repo_name: str) -> None:
    present = oci.push_image(repo_name, seed="present")
    ghost = descriptor(OCI_MANIFEST, b"ghost manifest", platform=PLATFORM)
    body = index_manifest([present.descriptor(platform=PLATFORM), ghost])
    assert_error(oci.put_manifest(repo_name, "ghost", body, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(oci.get_manifest(repo_name, "ghost"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    "platform",
    [{"os": 1, "architecture": "amd64"}, {"os": "linux"}, {"os": "linux", "architecture": ["amd64"]},
     {**PLATFORM, "variant": 8}, {**PLATFORM, "os.features": "sse4"}, {**PLATFORM, "os.version": [10]},
     "linux/amd64", [PLATFORM]],
    ids=["os-number", "no-architecture", "architecture-list", "variant-number", "features-string",
         "version-list", "string", "list"],
)
def test_index_with_a_malformed_platform_is_refused(oci: OCIClient, repo_name: str, platform: object) -> None:
    """Such an index was stored, and the management API then answered 500 for the repository's
    artifacts. The image spec types every platform field (image-index.md)."""
    child = oci.push_image(repo_name, seed="child")
    body = index_manifest([child.descriptor(platform=platform)])
    refused = oci.put_manifest(repo_name, "multi", body, OCI_INDEX)
    assert_error(refused, 400, "MANIFEST_INVALID")
    assert "manifests[0].platform" in refused.json()["errors"][0]["message"], describe(refused)
    assert_error(oci.get_manifest(repo_name, digest_of(body)), 404, "MANIFEST_UNKNOWN")
    assert oci.tags(repo_name) in (None, [])


def test_index_child_with_the_wrong_size_is_refused(oci: OCIClient, repo_name: str) -> None:
    child = oci.push_image(repo_name, seed="child")
    for size in (len(child.body) - 1, len(child.body) + 1, 0):
        body = index_manifest([{**child.descriptor(platform=PLATFORM), "size": size}])
        refused = oci.put_manifest(repo_name, "multi", body, OCI_INDEX)
        assert_error(refused, 400, "MANIFEST_INVALID")
        assert child.digest in refused.json()["errors"][0]["message"]
    assert oci.tags(repo_name) in (None, [])
    body = index_manifest([child.descriptor(platform=PLATFORM)])
    good = oci.push_manifest(repo_name, "multi", body, OCI_INDEX)
    assert_pullable(oci, repo_name, "multi", good)


def test_duplicate_json_keys_are_refused(oci: OCIClient, repo_name: str) -> None:
    """A registry and a Go client would read different digests from `"digest": A, "digest": B`."""
    honest = oci.push_image(repo_name, seed="honest")
    other = oci.push_image(repo_name, seed="other")
    body = (
        b'{"schemaVersion": 2, "mediaType": "%s", "manifests": [{"mediaType": "%s", "size": %d, '
        b'"digest": "%s", "digest": "%s", "platform": {"os": "linux", "architecture": "amd64"}}]}'
        % (OCI_INDEX.encode(), OCI_MANIFEST.encode(), len(honest.body), honest.digest.encode(),
           other.digest.encode())
    )
    refused = oci.put_manifest(repo_name, "dup", body, OCI_INDEX)
    assert_error(refused, 400, "MANIFEST_INVALID")
    assert "'digest' twice" in refused.json()["errors"][0]["message"]
    layers_twice = honest.body.replace(b'"layers"', b'"layers": [], "layers"', 1)
    assert_error(oci.put_manifest(repo_name, "dup", layers_twice, OCI_MANIFEST), 400, "MANIFEST_INVALID")
    assert oci.tags(repo_name) in (None, [])


def test_schema1_manifest_is_refused(oci: OCIClient, repo_name: str) -> None:
    body = json.dumps({
        "schemaVersion": 1, "name": repo_name, "tag": "old", "architecture": "amd64",
        "fsLayers": [{"blobSum": digest_of(b"")}], "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }).encode()
    assert_error(oci.put_manifest(repo_name, "old", body, DOCKER_SCHEMA1_SIGNED), 400, "MANIFEST_INVALID")
    assert oci.tags(repo_name) in (None, [])


def test_manifest_over_4_mib_is_413(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, EMPTY_JSON)
    body = image_manifest(empty_descriptor(), [], annotations={"padding": "x" * (4 * 1024 * 1024)})
    assert len(body) > 4 * 1024 * 1024
    assert_error(oci.put_manifest(repo_name, "huge", body, OCI_MANIFEST), 413)
    assert oci.tags(repo_name) in (None, [])


def test_manifest_of_almost_4_mib_is_accepted(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, EMPTY_JSON)
    body = image_manifest(empty_descriptor(), [], annotations={"padding": "x" * (4 * 1024 * 1024 - 500)})
    assert len(body) <= 4 * 1024 * 1024
    pushed = oci.push_manifest(repo_name, "big", body, OCI_MANIFEST)
    assert_pullable(oci, repo_name, "big", pushed)


def test_put_by_digest_that_does_not_match_body_is_digest_invalid(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, EMPTY_JSON)
    body = image_manifest(empty_descriptor(), [])
    wrong = digest_of(body + b" ")
    assert_error(oci.put_manifest(repo_name, wrong, body, OCI_MANIFEST), 400, "DIGEST_INVALID")
    assert_error(oci.get_manifest(repo_name, wrong), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.get_manifest(repo_name, digest_of(body)), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe"])
def test_invalid_json_is_manifest_invalid(oci: OCIClient, repo_name: str, body: bytes) -> None:
    assert_error(oci.put_manifest(repo_name, "bad", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")
    assert_error(oci.get_manifest(repo_name, "bad"), 404, "MANIFEST_UNKNOWN")


def test_accept_sent_as_one_header_per_type(oci: OCIClient, repo_name: str) -> None:
    """Go clients (containerd, skopeo) send several Accept headers instead of one list."""
    pushed = oci.push_image(repo_name, "multi-accept")
    headers = [("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST), ("Accept", OCI_INDEX)]
    response = oci.http.get(f"/v2/{repo_name}/manifests/multi-accept", headers=headers)
    assert response.status_code == 200, describe(response)
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.content == pushed.body


def test_content_type_parameters_are_ignored_on_push(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, EMPTY_JSON)
    body = image_manifest(empty_descriptor(), [])
    response = oci.put_manifest(repo_name, "params", body, f"{OCI_MANIFEST}; charset=utf-8")
    assert response.status_code == 201, describe(response)
    assert_pullable(oci, repo_name, "params", PushedManifest(body, digest_of(body), OCI_MANIFEST))
