"""Pull workflow: version check, blob GET/HEAD (with ranges and sha512), error bodies."""

from __future__ import annotations

import httpx
import pytest

from tests.support.ociclient import OCIClient, assert_error, describe, digest_of

BLOB = bytes(range(256)) * 4  # 1 KiB, every byte value


def test_version_check_answers_200_with_api_version_header(client: httpx.Client) -> None:
    response = client.get("/v2/")
    assert response.status_code == 200, describe(response)
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_get_blob_returns_exact_bytes_and_headers(oci: OCIClient, repo_name: str) -> None:
    digest = oci.push_blob(repo_name, BLOB)
    response = oci.http.get(f"/v2/{repo_name}/blobs/{digest}")
    assert response.status_code == 200, describe(response)
    assert response.content == BLOB
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == str(len(BLOB))
    assert digest in response.headers["ETag"]


def test_head_blob_has_headers_and_no_body(oci: OCIClient, repo_name: str) -> None:
    digest = oci.push_blob(repo_name, BLOB)
    request_ids = []
    for _ in range(2):  # the second HEAD reuses the headers the first one encoded
        response = oci.head_blob(repo_name, digest)
        assert response.status_code == 200, describe(response)
        assert response.content == b""
        assert response.headers["Docker-Content-Digest"] == digest
        assert response.headers["Content-Length"] == str(len(BLOB))
        assert digest in response.headers["ETag"]
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["Cache-Control"] == "max-age=31536000"
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        request_ids.append(response.headers["X-Request-Id"])  # the middleware's, added to a copy
    assert "," not in request_ids[1] and request_ids[0] != request_ids[1]


LARGE_BLOB = bytes(range(251)) * 2500  # ~610 KiB: a range of it is sent in several 256 KiB pieces
LARGE = len(LARGE_BLOB)


@pytest.mark.parametrize(
    ("blob", "header", "start", "end"),
    [(BLOB, "bytes=0-0", 0, 0), (BLOB, "bytes=10-19", 10, 19), (BLOB, "bytes=1000-", 1000, 1023),
     (BLOB, "bytes=-24", 1000, 1023), (BLOB, "bytes=1000-5000", 1000, 1023),
     (LARGE_BLOB, "bytes=100-", 100, LARGE - 1), (LARGE_BLOB, "bytes=262143-262144", 262143, 262144),
     (LARGE_BLOB, "bytes=-300000", LARGE - 300000, LARGE - 1), (LARGE_BLOB, "bytes=0-", 0, LARGE - 1)],
    ids=["0-0", "10-19", "1000-", "last-24", "past-the-end", "large-100-", "large-across-a-piece",
         "large-last-300000", "large-whole"],
)
def test_range_request_returns_206_with_exactly_those_bytes(
    oci: OCIClient, repo_name: str, blob: bytes, header: str, start: int, end: int
) -> None:
    digest = oci.push_blob(repo_name, blob)
    response = oci.http.get(f"/v2/{repo_name}/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 206, describe(response)
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(blob)}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.content == blob[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=2000-3000"])
def test_unsatisfiable_range_is_416(oci: OCIClient, repo_name: str, header: str) -> None:
    digest = oci.push_blob(repo_name, BLOB)
    response = oci.http.get(f"/v2/{repo_name}/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 416, describe(response)
    assert response.headers["Content-Range"] == f"bytes */{len(BLOB)}"


def test_blob_pushed_and_fetched_by_sha512_digest(oci: OCIClient, repo_name: str) -> None:
    data = b"content addressed by sha512"
    digest = oci.push_blob(repo_name, data, algorithm="sha512")
    assert digest.startswith("sha512:") and len(digest) == 7 + 128
    response = oci.http.get(f"/v2/{repo_name}/blobs/{digest}")
    assert response.status_code == 200, describe(response)
    assert response.content == data
    assert response.headers["Docker-Content-Digest"] == digest
    head = oci.head_blob(repo_name, digest)
    assert head.status_code == 200, describe(head)
    assert head.headers["Content-Length"] == str(len(data))


def test_sha512_monolithic_post(oci: OCIClient, repo_name: str) -> None:
    data = b"monolithic sha512"
    digest = digest_of(data, "sha512")
    response = oci.http.post(f"/v2/{repo_name}/blobs/uploads/", params={"digest": digest}, content=data,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, describe(response)
    assert oci.http.get(oci.url(response.headers["Location"])).content == data


def test_unknown_blob_is_404_blob_unknown(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, b"repository exists")
    missing = digest_of(b"never pushed")
    assert_error(oci.http.get(f"/v2/{repo_name}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    assert oci.head_blob(repo_name, missing).status_code == 404


def test_blob_in_unknown_repository_is_404(client: httpx.Client) -> None:
    response = client.get(f"/v2/no/such/repo/blobs/{digest_of(b'x')}")
    assert_error(response, 404, "BLOB_UNKNOWN")


def test_blob_pushed_to_one_repository_is_not_readable_from_another(oci: OCIClient, repo_name: str) -> None:
    digest = oci.push_blob(repo_name, b"private to one repository")
    oci.push_blob(f"{repo_name}-other", b"other repository exists")
    assert_error(oci.http.get(f"/v2/{repo_name}-other/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_unknown_manifest_is_404_manifest_unknown(oci: OCIClient, repo_name: str) -> None:
    oci.push_image(repo_name, "present")
    assert_error(oci.get_manifest(repo_name, "absent"), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.get_manifest(repo_name, digest_of(b"absent")), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(repo_name, "absent", method="HEAD").status_code == 404


def test_manifest_in_unknown_repository_is_404(oci: OCIClient) -> None:
    # As for a blob there: the manifest is unknown (NAME_UNKNOWN is for listings: tags/list).
    assert_error(oci.get_manifest("no/such/repository", "latest"), 404, "MANIFEST_UNKNOWN")


def test_manifest_reference_that_is_not_a_valid_tag_is_404_manifest_unknown(
    oci: OCIClient, repo_name: str
) -> None:
    """The OCI conformance suite reads `.INVALID_MANIFEST_NAME`: nothing can have that name, so it is
    unknown (404), not a bad request; pushing to it is the client's error (400)."""
    pushed = oci.push_image(repo_name, "present")
    for reference in (".INVALID_MANIFEST_NAME", "-lead", "a" * 129):
        assert_error(oci.get_manifest(repo_name, reference), 404, "MANIFEST_UNKNOWN")
        head = oci.get_manifest(repo_name, reference, method="HEAD")
        assert head.status_code == 404, describe(head)
        assert_error(oci.http.delete(f"/v2/{repo_name}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
        put = oci.put_manifest(repo_name, reference, pushed.body, pushed.media_type)
        assert_error(put, 400, "MANIFEST_INVALID")
    assert oci.tags(repo_name) == ["present"]
