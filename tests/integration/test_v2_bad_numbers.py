"""Numbers in /v2 requests that `int()` chokes on, and error bodies that must not show storage paths.

`'²'.isdigit()` is true but `int('²')` fails, and `int()` refuses more than 4,300 digits: a `?n=`, a
`Content-Length` or a `Range` like that was a 500. Each must be the spec's 4xx (or, where a number is
merely larger than anything, the answer that number deserves). The whole app in-process
(tests/support/inprocess.py), as the fuzzing suite found them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.inprocess import ADMIN, TestClient, in_process_client
from tests.support.ociclient import OCIClient, assert_error, describe, digest_of

HUGE = "9" * 5000
LAYER = b"a layer of forty bytes, give or take...."


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("v2-numbers")


@pytest.fixture(scope="module")
def http(workdir: Path) -> Iterator[TestClient]:
    with in_process_client(workdir) as client:
        assert client.post("/api/v1/projects", json={"name": "team"}, auth=ADMIN).status_code == 201
        client.auth = ADMIN
        OCIClient(client).push_blob("team/app", LAYER)
        yield client


@pytest.mark.parametrize("path", ["/v2/_catalog", "/v2/team/app/tags/list"])
def test_a_superscript_page_size_is_refused(http: TestClient, path: str) -> None:
    assert_error(http.get(path, params={"n": "²"}), 400, "UNSUPPORTED")


@pytest.mark.parametrize("path", ["/v2/_catalog", "/v2/team/app/tags/list"])
def test_a_page_size_of_thousands_of_digits_is_the_largest_page(http: TestClient, path: str) -> None:
    response = http.get(path, params={"n": HUGE})
    assert response.status_code == 200, describe(response)


@pytest.mark.parametrize("length", [b"\xb2", b"\xb3", HUGE.encode(), b"1" + b"0" * 25])
def test_a_chunk_with_an_unreadable_or_absurd_content_length_is_refused(
    http: TestClient, length: bytes
) -> None:
    location = OCIClient(http).upload_location("team/app")
    response = http.patch(location, content=b"abc", headers={"Content-Length": length})
    assert_error(response, 400, "SIZE_INVALID")


@pytest.mark.parametrize("length", [b"\xb2", HUGE.encode()])
def test_a_manifest_with_an_unreadable_or_absurd_content_length_is_refused(
    http: TestClient, length: bytes
) -> None:
    response = http.put(
        "/v2/team/app/manifests/v1",
        content=b"{}",
        headers={"Content-Length": length, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert_error(response, 400, "SIZE_INVALID")


def test_ranges_of_thousands_of_digits(http: TestClient) -> None:
    url = f"/v2/team/app/blobs/{digest_of(LAYER)}"
    for outside in (f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}"):
        response = http.get(url, headers={"Range": outside})
        assert response.status_code == 416, describe(response)
        assert response.json()["errors"][0]["code"] == "RANGE_INVALID"  # registry:2's code for a 416
        assert response.headers["content-range"] == f"bytes */{len(LAYER)}"
    for whole in (f"bytes=0-{HUGE}", f"bytes=-{HUGE}"):
        response = http.get(url, headers={"Range": whole})
        assert response.status_code == 206 and response.content == LAYER, describe(response)
        assert response.headers["content-range"] == f"bytes 0-{len(LAYER) - 1}/{len(LAYER)}"
    # Digits of another kind are no range at all: ignored, as RFC 9110 allows.
    assert http.get(url, headers={"Range": "bytes=²-³".encode("latin-1")}).content == LAYER


def test_an_error_body_never_shows_a_storage_path(http: TestClient, workdir: Path) -> None:
    """An upload whose temporary data is gone from storage (a purge, a lost disk): the client is told
    its upload or blob is unknown, never where dockyard keeps its files."""
    location = OCIClient(http).upload_location("team/app")
    assert http.patch(location, content=b"first chunk").status_code == 202
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    stored = [path for path in (workdir / "data").rglob("*") if upload_id in str(path) and path.is_file()]
    assert stored, "the upload's data file"
    for path in stored:
        path.unlink()
    patch = http.patch(location, content=b"second chunk")
    put = http.put(location, params={"digest": "sha256:" + hashlib.sha256(b"first chunk").hexdigest()})
    status = http.get(location)  # the session's row is still there; only its bytes are gone
    # The missing bytes read as an unknown blob (BLOB_UPLOAD_UNKNOWN would name them better).
    assert_error(patch, 404, "BLOB_UNKNOWN")
    assert_error(put, 404, "BLOB_UNKNOWN")
    assert status.status_code == 204, describe(status)
    for response in (patch, put, status):
        for leak in (upload_id + "/", "uploads/", str(workdir), "/data", "path not found"):
            assert leak not in response.text, f"{leak!r} in {describe(response)}"
