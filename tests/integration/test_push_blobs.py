"""Push workflow, blobs: monolithic and chunked uploads, upload sessions, cross-repository mounts."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

from tests.support.ociclient import OCIClient, assert_error, describe, digest_of
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

DATA = b"0123456789abcdefghij"  # 20 bytes, three chunks below


def assert_blob(oci: OCIClient, repo: str, data: bytes) -> None:
    response = oci.http.get(f"/v2/{repo}/blobs/{digest_of(data)}")
    assert response.status_code == 200, describe(response)
    assert response.content == data


def assert_no_blob(oci: OCIClient, repo: str, digest: str) -> None:
    response = oci.head_blob(repo, digest)
    assert response.status_code == 404, describe(response)


def test_single_post_monolithic_upload(oci: OCIClient, repo_name: str) -> None:
    digest = digest_of(DATA)
    response = oci.http.post(f"/v2/{repo_name}/blobs/uploads/", params={"digest": digest}, content=DATA,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, describe(response)
    assert response.headers["Docker-Content-Digest"] == digest
    location = oci.url(response.headers["Location"])
    assert oci.http.get(location).content == DATA
    assert_blob(oci, repo_name, DATA)


def test_post_then_put_upload(oci: OCIClient, repo_name: str) -> None:
    start = oci.start_upload(repo_name)
    assert start.status_code == 202, describe(start)
    location = start.headers["Location"]
    assert location
    digest = digest_of(DATA)
    done = oci.finish_upload(location, digest, DATA)
    assert done.status_code == 201, describe(done)
    assert done.headers["Docker-Content-Digest"] == digest
    assert oci.http.get(oci.url(done.headers["Location"])).content == DATA


def test_each_upload_session_has_its_own_location(oci: OCIClient, repo_name: str) -> None:
    assert oci.upload_location(repo_name) != oci.upload_location(repo_name)


def test_chunked_upload_reports_location_and_range(oci: OCIClient, repo_name: str) -> None:
    location = oci.upload_location(repo_name)
    for start, end in ((0, 6), (7, 13)):
        response = oci.patch_chunk(location, DATA[start : end + 1], start)
        assert response.status_code == 202, describe(response)
        assert response.headers["Range"] == f"0-{end}"
        location = response.headers["Location"]
    done = oci.finish_upload(location, digest_of(DATA), DATA[14:])  # final chunk in the PUT
    assert done.status_code == 201, describe(done)
    assert_blob(oci, repo_name, DATA)


def test_chunked_upload_closed_by_empty_put(oci: OCIClient, repo_name: str) -> None:
    location = oci.upload_location(repo_name)
    for start in (0, 10):
        response = oci.patch_chunk(location, DATA[start : start + 10], start)
        assert response.status_code == 202, describe(response)
        location = response.headers["Location"]
    done = oci.finish_upload(location, digest_of(DATA))
    assert done.status_code == 201, describe(done)
    assert_blob(oci, repo_name, DATA)


def test_streamed_patch_without_content_range(oci: OCIClient, repo_name: str) -> None:
    """docker and containerd stream a whole layer in one PATCH with no Content-Range."""
    location = oci.upload_location(repo_name)
    response = oci.patch_chunk(location, DATA)
    assert response.status_code == 202, describe(response)
    assert response.headers["Range"] == f"0-{len(DATA) - 1}"
    done = oci.finish_upload(response.headers["Location"], digest_of(DATA))
    assert done.status_code == 201, describe(done)
    assert_blob(oci, repo_name, DATA)


def test_out_of_order_chunk_is_416_and_upload_survives(oci: OCIClient, repo_name: str) -> None:
    location = oci.patch_chunk(oci.upload_location(repo_name), DATA[:5], 0).headers["Location"]
    gap = oci.patch_chunk(location, DATA[8:12], 8)
    assert gap.status_code == 416, describe(gap)
    status = oci.http.get(oci.url(location))
    assert status.status_code == 204, describe(status)
    assert status.headers["Range"] == "0-4"
    rest = oci.patch_chunk(location, DATA[5:], 5)
    assert rest.status_code == 202, describe(rest)
    assert oci.finish_upload(rest.headers["Location"], digest_of(DATA)).status_code == 201
    assert_blob(oci, repo_name, DATA)


def test_repeated_chunk_is_416(oci: OCIClient, repo_name: str) -> None:
    location = oci.patch_chunk(oci.upload_location(repo_name), DATA[:5], 0).headers["Location"]
    again = oci.patch_chunk(location, DATA[:5], 0)
    assert again.status_code == 416, describe(again)
    status = oci.http.get(oci.url(location))
    assert status.status_code == 204, describe(status)
    assert status.headers["Range"] == "0-4"


def test_upload_status_is_204_with_range_and_location(oci: OCIClient, repo_name: str) -> None:
    location = oci.patch_chunk(oci.upload_location(repo_name), DATA[:12], 0).headers["Location"]
    status = oci.http.get(oci.url(location))
    assert status.status_code == 204, describe(status)
    assert status.content == b""
    assert status.headers["Range"] == "0-11"
    assert status.headers["Location"]
    assert oci.patch_chunk(status.headers["Location"], DATA[12:], 12).status_code == 202


def test_cancelled_upload_is_gone(oci: OCIClient, repo_name: str) -> None:
    location = oci.patch_chunk(oci.upload_location(repo_name), DATA[:5], 0).headers["Location"]
    cancelled = oci.http.delete(oci.url(location))
    assert cancelled.status_code == 204, describe(cancelled)
    assert_error(oci.http.get(oci.url(location)), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.patch_chunk(location, DATA[5:], 5), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.finish_upload(location, digest_of(DATA), DATA[5:]), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.delete(oci.url(location)), 404, "BLOB_UPLOAD_UNKNOWN")


def test_completed_upload_session_cannot_be_reused(oci: OCIClient, repo_name: str) -> None:
    location = oci.upload_location(repo_name)
    assert oci.finish_upload(location, digest_of(DATA), DATA).status_code == 201
    assert_error(oci.patch_chunk(location, b"more", 0), 404, "BLOB_UPLOAD_UNKNOWN")


def test_the_final_put_again_after_its_commit_answers_created_again(oci: OCIClient, repo_name: str) -> None:
    """HAProxy sends a PUT again when the node running it died before it answered (`retry-on
    empty-response`): the repeat finds the upload committed, and gets what the first would have had."""
    location = oci.patch_chunk(oci.upload_location(repo_name), DATA, 0).headers["Location"]
    digest = digest_of(DATA)
    assert oci.finish_upload(location, digest).status_code == 201
    again = oci.finish_upload(location, digest)
    assert again.status_code == 201, describe(again)
    assert again.headers["Docker-Content-Digest"] == digest
    assert again.headers["Location"].endswith(f"/v2/{repo_name}/blobs/{digest}")
    assert oci.http.get(f"/v2/{repo_name}/blobs/{digest}", follow_redirects=True).content == DATA
    # Not for another blob, nor for a PUT that brings bytes, nor for anything else on the upload.
    assert_error(oci.finish_upload(location, digest_of(b"another")), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.finish_upload(location, digest, DATA), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.get(oci.url(location)), 404, "BLOB_UPLOAD_UNKNOWN")


def test_unknown_upload_session_is_404(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, b"repository exists")
    url = f"/v2/{repo_name}/blobs/uploads/00000000-0000-4000-8000-000000000000"
    assert_error(oci.http.get(url), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.patch(url, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_wrong_digest_at_put_is_digest_invalid_and_nothing_is_stored(oci: OCIClient, repo_name: str) -> None:
    claimed = digest_of(b"something else")
    response = oci.finish_upload(oci.upload_location(repo_name), claimed, DATA)
    assert_error(response, 400, "DIGEST_INVALID")
    assert_no_blob(oci, repo_name, claimed)
    assert_no_blob(oci, repo_name, digest_of(DATA))


def test_wrong_digest_on_single_post_is_digest_invalid(oci: OCIClient, repo_name: str) -> None:
    claimed = digest_of(b"not these bytes")
    response = oci.http.post(f"/v2/{repo_name}/blobs/uploads/", params={"digest": claimed}, content=DATA)
    assert_error(response, 400, "DIGEST_INVALID")
    assert_no_blob(oci, repo_name, claimed)
    assert_no_blob(oci, repo_name, digest_of(DATA))


def test_put_without_digest_is_refused(oci: OCIClient, repo_name: str) -> None:
    location = oci.upload_location(repo_name)
    response = oci.http.put(oci.url(location), content=DATA)
    assert_error(response, 400, "DIGEST_INVALID")
    assert_no_blob(oci, repo_name, digest_of(DATA))


def test_chunk_longer_than_its_content_range_is_refused(oci: OCIClient, repo_name: str) -> None:
    location = oci.upload_location(repo_name)
    response = oci.http.patch(oci.url(location), content=DATA[:5], headers={"Content-Range": "0-9"})
    assert_error(response, 416, "BLOB_UPLOAD_INVALID")
    status = oci.http.get(oci.url(location))  # the session survives, without the bad chunk
    assert status.status_code == 204, describe(status)
    assert status.headers.get("Range", "0-0") == "0-0", describe(status)
    assert_no_blob(oci, repo_name, digest_of(DATA[:5]))


def test_mount_from_another_repository(oci: OCIClient, repo_name: str) -> None:
    source = f"{repo_name}/source"
    digest = oci.push_blob(source, DATA)
    target = f"{repo_name}/target"
    response = oci.start_upload(target, mount=digest, **{"from": source})
    assert response.status_code == 201, describe(response)
    assert response.headers["Docker-Content-Digest"] == digest
    assert oci.http.get(oci.url(response.headers["Location"])).content == DATA
    assert_blob(oci, target, DATA)


def test_mount_from_repository_without_the_blob_starts_an_upload(oci: OCIClient, repo_name: str) -> None:
    source = f"{repo_name}/source"
    oci.push_blob(source, b"something else")
    data = f"nowhere in the registry yet: {repo_name}".encode()
    digest = digest_of(data)
    target = f"{repo_name}/target"
    response = oci.start_upload(target, mount=digest, **{"from": source})
    assert response.status_code == 202, describe(response)
    assert_no_blob(oci, target, digest)
    done = oci.finish_upload(response.headers["Location"], digest, data)
    assert done.status_code == 201, describe(done)
    assert_blob(oci, target, data)


def test_mount_does_not_leak_a_blob_the_source_cannot_read(oci: OCIClient, repo_name: str) -> None:
    owner = f"{repo_name}/owner"
    digest = oci.push_blob(owner, b"owned by one repository only")
    bystander = f"{repo_name}/bystander"
    oci.push_blob(bystander, b"bystander exists")
    target = f"{repo_name}/target"
    response = oci.start_upload(target, mount=digest, **{"from": bystander})
    # A named source that cannot read the blob is no licence to read it: an upload session, no mount.
    assert response.status_code == 202, describe(response)
    assert_no_blob(oci, target, digest)


def test_automatic_mount_without_from(oci: OCIClient, repo_name: str) -> None:
    digest = oci.push_blob(f"{repo_name}/elsewhere", DATA)
    target = f"{repo_name}/target"
    response = oci.start_upload(target, mount=digest)
    assert response.status_code == 201, describe(response)
    assert response.headers["Docker-Content-Digest"] == digest
    assert_blob(oci, target, DATA)


def test_upload_continues_after_server_restart(make_server: Callable[..., RunningServer]) -> None:
    first = make_server()
    repo = "restart/continues"
    with httpx.Client(base_url=first.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        location = oci.patch_chunk(oci.upload_location(repo), DATA[:8], 0).headers["Location"]
    first.stop()
    second = make_server({"datadir": str(first.datadir)})
    path = httpx.URL(location)  # the new process listens on another port: keep path and query only
    relative = path.raw_path.decode()
    with httpx.Client(base_url=second.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        status = http.get(relative)
        assert status.status_code == 204, describe(status)
        assert status.headers["Range"] == "0-7"
        rest = oci.patch_chunk(relative, DATA[8:], 8)
        assert rest.status_code == 202, describe(rest)
        done = oci.finish_upload(rest.headers["Location"], digest_of(DATA))
        assert done.status_code == 201, describe(done)
        assert_blob(oci, repo, DATA)


def test_a_final_put_cut_short_leaves_the_upload_to_finish(oci: OCIClient, repo_name: str) -> None:
    """A PUT whose body stops before its Content-Length (the client went away) stores nothing; the
    upload keeps what it had and is completed by the next PUT."""
    location = oci.patch_chunk(oci.upload_location(repo_name), DATA[:12], 0).headers["Location"]
    target = httpx.URL(oci.url(location)).copy_merge_params({"digest": digest_of(DATA)})
    head = (
        f"PUT {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(DATA) - 12}\r\n\r\n"
    )
    with socket.create_connection((target.host, target.port), timeout=30) as sock:
        sock.sendall(head.encode() + DATA[12:15])  # 3 of the 8 bytes, then gone
    deadline = time.monotonic() + 30
    while True:  # the server notices the disconnect on its own time
        status = oci.http.get(oci.url(location))
        if status.status_code == 204 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status.status_code == 204, describe(status)
    assert status.headers["Range"] == "0-11"
    assert_no_blob(oci, repo_name, digest_of(DATA))
    done = oci.finish_upload(status.headers["Location"], digest_of(DATA), DATA[12:])
    assert done.status_code == 201, describe(done)
    assert_blob(oci, repo_name, DATA)
