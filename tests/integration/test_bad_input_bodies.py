"""Bad input in request bodies: malformed manifests, truncated and oversized bodies, lying digests.

Each refusal is a 4xx with the spec's error body, and leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.ociclient import (
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    assert_error,
    describe,
    descriptor,
    digest_of,
    raw_chunked_request,
    raw_error_codes,
    raw_request,
)
from tests.support.server import RunningServer

CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"bad input layer"


def valid_manifest() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, CONFIG),
            "layers": [descriptor(OCI_LAYER, LAYER)]}


def with_changes(**changes: Any) -> bytes:
    document = valid_manifest()
    for key, value in changes.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document).encode()


def bad_descriptor(**changes: Any) -> dict[str, Any]:
    return {**descriptor(OCI_LAYER, LAYER), **changes}


MALFORMED_MANIFESTS = {
    "json array": b"[]",
    "json string": b'"manifest"',
    "json null": b"null",
    "schemaVersion string": with_changes(schemaVersion="2"),
    "schemaVersion 3": with_changes(schemaVersion=3),
    "no schemaVersion": with_changes(schemaVersion=None),
    "no config": with_changes(config=None),
    "config is a string": with_changes(config="sha256:abc"),
    "layers is an object": with_changes(layers={}),
    "layer is a string": with_changes(layers=[digest_of(LAYER)]),
    "layer digest malformed": with_changes(layers=[bad_descriptor(digest="sha256:zzz")]),
    "layer digest uppercase": with_changes(layers=[bad_descriptor(digest=digest_of(LAYER).upper())]),
    "layer digest unsupported algorithm": with_changes(layers=[bad_descriptor(digest="md5:" + "a" * 32)]),
    "layer size negative": with_changes(layers=[bad_descriptor(size=-1)]),
    "layer size string": with_changes(layers=[bad_descriptor(size="15")]),
    "layer size fractional": with_changes(layers=[bad_descriptor(size=1.5)]),
    "layer without mediaType": with_changes(layers=[{"digest": digest_of(LAYER), "size": len(LAYER)}]),
    "layer without digest": with_changes(layers=[{"mediaType": OCI_LAYER, "size": len(LAYER)}]),
    "config size negative": with_changes(config={**descriptor(OCI_CONFIG, CONFIG), "size": -5}),
    "mediaType differs from Content-Type": with_changes(mediaType=DOCKER_MANIFEST),
    "subject digest malformed": with_changes(subject={**descriptor(OCI_MANIFEST, b"x"), "digest": "sha256:"}),
    "annotations not strings": with_changes(annotations={"a": 1}),
    "deeply nested": b'{"schemaVersion":2,"annotations":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.fixture
def repo_with_blobs(oci: OCIClient, repo_name: str) -> str:
    oci.push_blob(repo_name, CONFIG)
    oci.push_blob(repo_name, LAYER)
    return repo_name


def assert_nothing_tagged(
    oci: OCIClient, repo: str, catalog_before: list[str], tags: list[str] | None
) -> None:
    """No tag and no new repository: `tags` is [] where the repository holds blobs, None (unknown)
    where the refused manifest was the first thing pushed to it."""
    assert oci.tags(repo) == tags
    assert oci.catalog() == catalog_before


def test_the_valid_baseline_is_accepted(oci: OCIClient, repo_with_blobs: str) -> None:
    """The malformed cases below are this manifest with one thing broken."""
    response = oci.put_manifest(repo_with_blobs, "baseline", with_changes(), OCI_MANIFEST)
    assert response.status_code == 201, describe(response)


@pytest.mark.parametrize("case", list(MALFORMED_MANIFESTS))
def test_malformed_manifest_is_manifest_invalid(oci: OCIClient, repo_with_blobs: str, case: str) -> None:
    before = oci.catalog()
    body = MALFORMED_MANIFESTS[case]
    # A bad digest inside the document too: DIGEST_INVALID is for a digest in the request (the reference
    # or the upload's), a manifest that names a malformed one is itself invalid.
    response = oci.put_manifest(repo_with_blobs, "bad", body, OCI_MANIFEST)
    assert_error(response, 400, "MANIFEST_INVALID")
    by_digest = oci.put_manifest(repo_with_blobs, digest_of(body), body, OCI_MANIFEST)
    assert_error(by_digest, 400, "MANIFEST_INVALID")
    assert_error(oci.get_manifest(repo_with_blobs, digest_of(body)), 404, "MANIFEST_UNKNOWN")
    assert_nothing_tagged(oci, repo_with_blobs, before, [])


@pytest.mark.parametrize(
    "body",
    [json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}).encode(),
     json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
         {"mediaType": OCI_MANIFEST, "digest": "sha256:nothex", "size": 10}]}).encode(),
     json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ["sha256:abc"]}).encode()],
    ids=["manifests-object", "child-digest-malformed", "child-is-string"],
)
def test_malformed_index_is_manifest_invalid(oci: OCIClient, repo_name: str, body: bytes) -> None:
    before = oci.catalog()
    response = oci.put_manifest(repo_name, "bad", body, OCI_INDEX)
    assert_error(response, 400, "MANIFEST_INVALID")
    assert_nothing_tagged(oci, repo_name, before, None)


def test_descriptor_size_that_lies_about_the_blob_is_refused(oci: OCIClient, repo_with_blobs: str) -> None:
    body = with_changes(layers=[bad_descriptor(size=len(LAYER) + 1000)])
    response = oci.put_manifest(repo_with_blobs, "liar", body, OCI_MANIFEST)
    assert_error(response, 400, "MANIFEST_INVALID")
    assert oci.tags(repo_with_blobs) == []


# --- truncated bodies: the client dies mid-request ---------------------------------------------
PAYLOAD = bytes(range(256)) * 8  # 2 KiB


def settle() -> None:
    """Give the server a moment to notice the hang-up before checking nothing was committed."""
    time.sleep(0.5)


def assert_refused_or_silent(response: Any, code: str) -> None:
    """A server may just close a connection whose body never came in full; if it answers, it is a 400
    with `code`."""
    if response is not None:
        assert (response.status, raw_error_codes(response)[0]) == (400, code), response


def test_truncated_single_post_does_not_commit(server: RunningServer, oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, b"repository exists")
    digest = digest_of(PAYLOAD)
    response = raw_request(server.host, "POST", f"/v2/{repo_name}/blobs/uploads/?digest={digest}",
                           {"Content-Type": "application/octet-stream"}, PAYLOAD[:1000],
                           content_length=len(PAYLOAD))
    assert_refused_or_silent(response, "BLOB_UPLOAD_INVALID")
    settle()
    assert oci.head_blob(repo_name, digest).status_code == 404
    assert oci.head_blob(repo_name, digest_of(PAYLOAD[:1000])).status_code == 404


def test_truncated_closing_put_does_not_commit(server: RunningServer, oci: OCIClient, repo_name: str) -> None:
    location = oci.url(oci.upload_location(repo_name)).copy_merge_params({"digest": digest_of(PAYLOAD)})
    target = location.raw_path.decode()
    response = raw_request(server.host, "PUT", target, {"Content-Type": "application/octet-stream"},
                           PAYLOAD[:1000], content_length=len(PAYLOAD))
    assert_refused_or_silent(response, "BLOB_UPLOAD_INVALID")
    settle()
    assert oci.head_blob(repo_name, digest_of(PAYLOAD)).status_code == 404


def test_truncated_patch_can_be_resumed(server: RunningServer, oci: OCIClient, repo_name: str) -> None:
    """Resumable push: after a broken chunk the upload status says where to continue from."""
    location = oci.upload_location(repo_name)
    target = oci.url(location).raw_path.decode()
    response = raw_request(server.host, "PATCH", target, {"Content-Type": "application/octet-stream"},
                           PAYLOAD[:1000], content_length=len(PAYLOAD))
    assert_refused_or_silent(response, "BLOB_UPLOAD_INVALID")
    settle()
    status = oci.http.get(oci.url(location))
    assert status.status_code == 204, describe(status)
    reported = status.headers.get("Range", "0-0")
    stored = 0 if reported == "0-0" else int(reported.split("-")[1]) + 1
    assert stored <= 1000
    rest = oci.patch_chunk(status.headers["Location"], PAYLOAD[stored:], stored)
    assert rest.status_code == 202, describe(rest)
    done = oci.finish_upload(rest.headers["Location"], digest_of(PAYLOAD))
    assert done.status_code == 201, describe(done)
    assert oci.http.get(f"/v2/{repo_name}/blobs/{digest_of(PAYLOAD)}").content == PAYLOAD


def test_truncated_manifest_put_does_not_commit(
    server: RunningServer, oci: OCIClient, repo_with_blobs: str
) -> None:
    before = oci.catalog()
    body = with_changes()
    response = raw_request(server.host, "PUT", f"/v2/{repo_with_blobs}/manifests/cut",
                           {"Content-Type": OCI_MANIFEST}, body, content_length=len(body) + 100)
    assert_refused_or_silent(response, "SIZE_INVALID")
    settle()
    assert_error(oci.get_manifest(repo_with_blobs, "cut"), 404, "MANIFEST_UNKNOWN")
    assert_nothing_tagged(oci, repo_with_blobs, before, [])


# --- oversized and lying bodies ---------------------------------------------------------------
def test_manifest_declaring_100_mib_is_refused_without_reading_it(
    server: RunningServer, oci: OCIClient, repo_name: str
) -> None:
    """The registry answers 413 from Content-Length alone instead of reading (and buffering) the body."""
    response = raw_request(server.host, "PUT", f"/v2/{repo_name}/manifests/huge",
                           {"Content-Type": OCI_MANIFEST}, b"{" + b" " * 65535,
                           content_length=100 * 1024 * 1024, hang_up=False, timeout=10)
    assert response is not None, "no answer within 10 s: the registry waited for a 100 MiB manifest"
    assert response.status == 413, response
    assert oci.tags(repo_name) is None


def test_chunked_manifest_over_the_limit_is_413(
    server: RunningServer, oci: OCIClient, repo_name: str
) -> None:
    """Without Content-Length (chunked transfer) the limit still holds."""
    body = with_changes(annotations={"pad": "x" * (5 * 1024 * 1024)})
    response = raw_chunked_request(server.host, "PUT", f"/v2/{repo_name}/manifests/huge",
                                   {"Content-Type": OCI_MANIFEST}, body)
    assert response is not None, "no answer to an oversized chunked manifest"
    assert response.status == 413, response
    raw_error_codes(response)
    assert oci.tags(repo_name) is None


def test_sha512_digest_of_other_bytes_is_digest_invalid(oci: OCIClient, repo_name: str) -> None:
    claimed = digest_of(b"other bytes", "sha512")
    response = oci.http.post(f"/v2/{repo_name}/blobs/uploads/", params={"digest": claimed}, content=PAYLOAD)
    assert_error(response, 400, "DIGEST_INVALID")
    assert oci.head_blob(repo_name, claimed).status_code == 404
    assert oci.head_blob(repo_name, digest_of(PAYLOAD, "sha512")).status_code == 404
