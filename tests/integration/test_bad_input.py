"""Bad input on the request line: names, digests, tags, ranges, Content-Range, query strings, routes.

Every answer must be a 4xx with the spec's error body (never a 5xx), and nothing may be written:
no blob, no tag, no repository in the catalog, no file anywhere outside (or named after) the request.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.ociclient import (
    OCIClient,
    assert_error,
    describe,
    digest_of,
    raw_error_codes,
    raw_request,
)
from tests.support.server import RunningServer

BLOB = b"bad input suite blob"


def paths_containing(marker: str, datadir: Path) -> list[str]:
    """Files named after marker: anywhere in the server's work dir, or next to any ancestor of it."""
    found = []
    workdir = datadir.parent
    for root, dirs, files in os.walk(workdir):
        found += [os.path.join(root, name) for name in dirs + files if marker in name]
    for ancestor in workdir.parents:
        try:
            found += [str(ancestor / name) for name in os.listdir(ancestor) if marker in name]
        except OSError:
            continue
    return found


# --- repository names ------------------------------------------------------------------------
BAD_NAMES = [
    "Upper/case", "a//b", "-lead", "trail-", "trail.", "a/", "a..b", "a/.b", "a/-b", "a_/b",
    "x" * 256, "/".join(["abcdefghi"] * 26),  # 259 characters of valid components
    "..", "a/..", "a/./b", ".", "a%00b", "a%5Cb", "a%20b", "a%2Fb",  # an encoded separator is not one
]
TRAVERSALS = [  # {m} is a marker unique to the request; the check looks for files named after it
    "../{m}", "../../../../../../../../tmp/{m}", "a/../../{m}", "%2e%2e/%2e%2e/{m}", "a/%2e%2e/%2e%2e/{m}",
    "%2E%2E%2F%2E%2E%2F{m}", "..%2f..%2f{m}", "a/%2e%2e%2f%2e%2e%2f{m}", "..%5c..%5c{m}",
]


def assert_name_refused(status: int, codes: list[str] | None, what: str) -> None:
    assert status in (400, 404), f"{what}: status {status}"
    if status == 400 and codes is not None:
        assert codes[0] == "NAME_INVALID", f"{what}: {codes}"


def try_writes(server: RunningServer, name: str) -> None:
    """A monolithic blob push, an upload session and a manifest push, sent byte for byte (no normalising)."""
    digest = digest_of(BLOB)
    requests = [
        ("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", BLOB),
        ("POST", f"/v2/{name}/blobs/uploads/", b""),
        ("PUT", f"/v2/{name}/manifests/latest", b'{"schemaVersion":2}'),
        ("GET", f"/v2/{name}/tags/list", b""),
        ("GET", f"/v2/{name}/blobs/{digest}", b""),
    ]
    for method, target, body in requests:
        headers = {"Content-Type": "application/octet-stream"}
        response = raw_request(server.host, method, target, headers, body)
        assert response is not None, f"{method} {target}: no answer"
        codes = raw_error_codes(response) if response.body else None
        assert_name_refused(response.status, codes, f"{method} {target}")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_malformed_name_is_refused(server: RunningServer, oci: OCIClient, name: str) -> None:
    before = oci.catalog()
    try_writes(server, name)
    assert oci.catalog() == before


@pytest.mark.parametrize("pattern", TRAVERSALS)
def test_traversal_name_writes_nothing_outside_the_datadir(
    server: RunningServer, oci: OCIClient, pattern: str
) -> None:
    marker = f"escape-{uuid.uuid4().hex[:12]}"
    before = oci.catalog()
    try_writes(server, pattern.format(m=marker))
    assert paths_containing(marker, server.datadir) == []
    assert oci.catalog() == before


def test_longest_valid_name_works(oci: OCIClient) -> None:
    name = "/".join(["n" * 50] * 4 + ["m" * 51])  # the spec: a name is less than 256 characters
    assert len(name) == 255
    digest = oci.push_blob(name, BLOB)
    assert oci.head_blob(name, digest).status_code == 200


# --- digests ----------------------------------------------------------------------------------
BAD_DIGESTS = [
    "sha256:xyz", "md5:" + "a" * 32, "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
    "sha512:" + "a" * 64, "sha256:", ":" + "a" * 64, "sha256" + "a" * 64, "SHA256:" + "a" * 64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_malformed_digest_on_blob_reads(oci: OCIClient, repo_name: str, digest: str) -> None:
    oci.push_blob(repo_name, BLOB)
    for method in ("GET", "DELETE"):
        response = oci.http.request(method, f"/v2/{repo_name}/blobs/{digest}")
        if response.status_code == 400:
            assert_error(response, 400, "DIGEST_INVALID")
        else:
            assert_error(response, 404, "BLOB_UNKNOWN", "DIGEST_INVALID")
    assert oci.http.head(f"/v2/{repo_name}/blobs/{digest}").status_code in (400, 404)


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_malformed_digest_on_upload_is_digest_invalid(oci: OCIClient, repo_name: str, digest: str) -> None:
    single = oci.http.post(f"/v2/{repo_name}/blobs/uploads/", params={"digest": digest}, content=BLOB)
    assert_error(single, 400, "DIGEST_INVALID")
    closing = oci.finish_upload(oci.upload_location(repo_name), digest, BLOB)
    assert_error(closing, 400, "DIGEST_INVALID")
    assert oci.head_blob(repo_name, digest_of(BLOB)).status_code == 404


@pytest.mark.parametrize("digest", [digest for digest in BAD_DIGESTS if ":" in digest])  # else a tag
def test_malformed_digest_as_manifest_reference(oci: OCIClient, repo_name: str, digest: str) -> None:
    pushed = oci.push_image(repo_name, "real")
    put = oci.put_manifest(repo_name, digest, pushed.body, pushed.media_type)
    assert_error(put, 400, "DIGEST_INVALID", "MANIFEST_INVALID")
    get = oci.get_manifest(repo_name, digest)
    assert_error(get, (400, 404), "DIGEST_INVALID", "MANIFEST_INVALID", "MANIFEST_UNKNOWN")
    assert oci.tags(repo_name) == ["real"]


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "a" * 32])
def test_malformed_digest_on_mount(oci: OCIClient, repo_name: str, digest: str) -> None:
    oci.push_blob(f"{repo_name}-src", BLOB)
    response = oci.start_upload(repo_name, mount=digest, **{"from": f"{repo_name}-src"})
    if response.status_code != 202:  # 202: the registry could not mount and opened a session instead
        assert_error(response, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("tag", ["-lead", ".dot", "a" * 129, "with space", "t@g", "a/b"])
def test_malformed_tag_is_refused(oci: OCIClient, repo_name: str, tag: str) -> None:
    pushed = oci.push_image(repo_name, "good")
    response = oci.put_manifest(repo_name, tag, pushed.body, pushed.media_type)
    assert_error(response, (400, 404))
    assert oci.tags(repo_name) == ["good"]


# --- Range on blob GET ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "bytes=5-2", "items=0-1", "bytes=", "bytes=--1", "bytes=0-1,3-4", "bytes=-0",
     "bytes=99999999999999999999999-", "bytes=0-99999999999999999999999", "bytes = 0-1", "0-1"],
)
def test_malformed_range_header(oci: OCIClient, repo_name: str, header: str) -> None:
    digest = oci.push_blob(repo_name, BLOB)
    response = oci.http.get(f"/v2/{repo_name}/blobs/{digest}", headers={"Range": header})
    assert response.status_code in (200, 206, 416), describe(response)
    if response.status_code == 200:  # an ignored Range: the whole blob
        assert response.content == BLOB
    if response.status_code == 206 and "multipart" not in response.headers.get("Content-Type", ""):
        unit, _, span = response.headers["Content-Range"].partition(" ")
        first, last = (int(part) for part in span.split("/")[0].split("-"))
        assert unit == "bytes" and response.content == BLOB[first : last + 1]


# --- Content-Range on PATCH ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_range",
    ["abc", "5-2", "0-", "-1-4", "0-4-5", "10-14", "0-99999999999999999999999", "0x0-0x4", "0-3", "0-5"],
)
def test_malformed_content_range_on_patch(oci: OCIClient, repo_name: str, content_range: str) -> None:
    location = oci.upload_location(repo_name)
    response = oci.http.patch(oci.url(location), content=BLOB[:5], headers={"Content-Range": content_range})
    assert_error(response, (400, 416))
    status = oci.http.get(oci.url(location))
    if status.status_code == 204:  # the session survived: without the refused chunk
        assert status.headers.get("Range", "0-0") == "0-0", describe(status)
        good = oci.patch_chunk(location, BLOB, 0)
        assert good.status_code == 202, describe(good)
    else:
        assert_error(status, 404, "BLOB_UPLOAD_UNKNOWN")
    assert oci.head_blob(repo_name, digest_of(BLOB[:5])).status_code == 404


# --- query strings and routes ---------------------------------------------------------------------
@pytest.mark.parametrize("n", ["-1", "abc", "99999999999999999999999", "1.5", ""])
def test_malformed_pagination(oci: OCIClient, repo_name: str, n: str) -> None:
    oci.push_image(repo_name, "v1")
    for url in (f"/v2/{repo_name}/tags/list", "/v2/_catalog"):
        response = oci.http.get(url, params={"n": n})
        if response.status_code != 200:
            assert_error(response, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v2/a/b/nonsense"), ("PUT", "/v2/"), ("POST", "/v2/a/manifests/x"), ("PATCH", "/v2/a/blobs/x"),
     ("GET", "/v2/a/blobs/uploads/"), ("GET", "/v2/_catalog/extra"), ("TRACE", "/v2/")],
)
def test_unknown_routes_and_methods_are_4xx(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert 400 <= response.status_code < 500, describe(response)
