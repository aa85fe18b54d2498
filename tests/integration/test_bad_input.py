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
    assert (status, codes and codes[0]) == (400, "NAME_INVALID"), f"{what}: status {status}, codes {codes}"


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
    for method in ("GET", "DELETE", "HEAD"):
        assert_error(oci.http.request(method, f"/v2/{repo_name}/blobs/{digest}"), 400, "DIGEST_INVALID")


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
    assert_error(put, 400, "DIGEST_INVALID")
    assert_error(oci.get_manifest(repo_name, digest), 400, "DIGEST_INVALID")
    assert oci.tags(repo_name) == ["real"]


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "a" * 32])
def test_malformed_digest_on_mount(oci: OCIClient, repo_name: str, digest: str) -> None:
    oci.push_blob(f"{repo_name}-src", BLOB)
    response = oci.start_upload(repo_name, mount=digest, **{"from": f"{repo_name}-src"})
    # Refused, not a 202 session in place of the mount (what the spec allows for a mount it cannot do).
    assert_error(response, 400, "DIGEST_INVALID")


@pytest.mark.parametrize(
    ("tag", "status", "code"),
    [
        *((tag, 400, "MANIFEST_INVALID") for tag in ["-lead", ".dot", "a" * 129, "with space", "t@g"]),
        ("a/b", 404, "NAME_UNKNOWN"),  # .../manifests/a/b is no route of the API
    ],
)
def test_malformed_tag_is_refused(oci: OCIClient, repo_name: str, tag: str, status: int, code: str) -> None:
    pushed = oci.push_image(repo_name, "good")
    response = oci.put_manifest(repo_name, tag, pushed.body, pushed.media_type)
    assert_error(response, status, code)
    assert oci.tags(repo_name) == ["good"]


# --- Range on blob GET ----------------------------------------------------------------------------
# RFC 9110 lets a server ignore a Range it cannot parse (or several ranges): the whole blob, 200. A range
# that starts past the end (or a suffix of 0 bytes) cannot be satisfied: 416. One that runs past the end
# is cut to it: 206.
@pytest.mark.parametrize(
    ("header", "status"),
    [("bytes=abc", 200), ("bytes=5-2", 416), ("items=0-1", 200), ("bytes=", 200), ("bytes=--1", 200),
     ("bytes=0-1,3-4", 200), ("bytes=-0", 416), ("bytes=99999999999999999999999-", 416),
     ("bytes=0-99999999999999999999999", 206), ("bytes = 0-1", 200), ("0-1", 200)],
)
def test_malformed_range_header(oci: OCIClient, repo_name: str, header: str, status: int) -> None:
    digest = oci.push_blob(repo_name, BLOB)
    response = oci.http.get(f"/v2/{repo_name}/blobs/{digest}", headers={"Range": header})
    assert response.status_code == status, describe(response)
    if status == 416:
        assert response.json()["errors"][0]["code"] == "RANGE_INVALID"  # registry:2's, not the spec's
        assert response.headers["Content-Range"] == f"bytes */{len(BLOB)}"
        return
    assert response.content == BLOB
    if status == 206:
        assert response.headers["Content-Range"] == f"bytes 0-{len(BLOB) - 1}/{len(BLOB)}"


# --- Content-Range on PATCH ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_range",
    ["abc", "5-2", "0-", "-1-4", "0-4-5", "10-14", "0-99999999999999999999999", "0x0-0x4", "0-3", "0-5"],
)
def test_malformed_content_range_on_patch(oci: OCIClient, repo_name: str, content_range: str) -> None:
    location = oci.upload_location(repo_name)
    response = oci.http.patch(oci.url(location), content=BLOB[:5], headers={"Content-Range": content_range})
    # The spec's answer to a chunk that is not the next one; a malformed range is no next one either.
    assert_error(response, 416, "BLOB_UPLOAD_INVALID")
    status = oci.http.get(oci.url(location))  # the session survives, without the refused chunk
    assert status.status_code == 204, describe(status)
    assert status.headers.get("Range", "0-0") == "0-0", describe(status)
    good = oci.patch_chunk(location, BLOB, 0)
    assert good.status_code == 202, describe(good)
    assert oci.head_blob(repo_name, digest_of(BLOB[:5])).status_code == 404


# --- query strings and routes ---------------------------------------------------------------------
# A huge n is the largest page, an empty one no limit; what is no whole number at all is refused.
@pytest.mark.parametrize(
    ("n", "status"), [("-1", 400), ("abc", 400), ("99999999999999999999999", 200), ("1.5", 400), ("", 200)]
)
def test_malformed_pagination(oci: OCIClient, repo_name: str, n: str, status: int) -> None:
    oci.push_image(repo_name, "v1")
    for url in (f"/v2/{repo_name}/tags/list", "/v2/_catalog"):
        response = oci.http.get(url, params={"n": n})
        if status == 400:
            assert_error(response, 400, "UNSUPPORTED")
        else:
            assert response.status_code == 200, describe(response)


# An unknown path is 404 NAME_UNKNOWN (it names no repository endpoint); a known path with a method it
# does not take is 405 UNSUPPORTED.
@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/v2/a/b/nonsense", 404, "NAME_UNKNOWN"), ("PUT", "/v2/", 405, "UNSUPPORTED"),
     ("POST", "/v2/a/manifests/x", 405, "UNSUPPORTED"), ("PATCH", "/v2/a/blobs/x", 405, "UNSUPPORTED"),
     ("GET", "/v2/a/blobs/uploads/", 405, "UNSUPPORTED"), ("GET", "/v2/_catalog/extra", 404, "NAME_UNKNOWN"),
     ("TRACE", "/v2/", 405, "UNSUPPORTED")],
)
def test_unknown_routes_and_methods_are_4xx(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    assert_error(client.request(method, path), status, code)
