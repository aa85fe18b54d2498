"""Upload sessions belong to the repository they were started in and, with auth on, to the principal
who started them: to anyone else a session does not exist, whatever the verb (GET, PATCH, PUT,
DELETE), and nothing of it is touched. Real servers, SQLite here and PostgreSQL in the
DOCKYARD_TEST_DB=postgresql pass."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.ociclient import (
    OCIClient,
    _read_response,
    assert_error,
    bearer_client,
    describe,
    digest_of,
)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

MiB = 1024 * 1024
ADMIN = ("admin", "upload-sessions-Passw0rd")
ALICE = ("alice", "alice-uploads-Passw0rd")  # developer in team and in other
BOB = ("bob", "bob-uploads-Passw0rd")  # developer in other only
CAROL = ("carol", "carol-uploads-Passw0rd")  # developer in team too


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("sessions"),
        {"auth": {"enabled": True}, "http": {"workers": 2}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    with httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        for project in ("team", "other"):
            assert api.post("/projects", json={"name": project}).status_code == 201
        for user, password in (ALICE, BOB, CAROL):
            answer = api.post("/users", json={"username": user, "password": password})
            assert answer.status_code == 201, describe(answer)
        for project, user in (("team", "alice"), ("other", "alice"), ("other", "bob"), ("team", "carol")):
            answer = api.post(f"/projects/{project}/members", json={"user": user, "role": "developer"})
            assert answer.status_code == 201, describe(answer)
    yield running
    running.stop()


def started(oci: OCIClient, repo: str, data: bytes) -> str:
    """An upload with data in it; its upload id."""
    answer = oci.patch_chunk(oci.upload_location(repo), data, start=0)
    assert answer.status_code == 202, describe(answer)
    return answer.headers["Docker-Upload-UUID"]


def assert_not_found_by_every_verb(http: httpx.Client, path: str, data: bytes) -> None:
    """GET, PATCH, PUT (with and without a body) and DELETE on `path` all answer 404 BLOB_UPLOAD_UNKNOWN."""
    assert_error(http.get(path), 404, "BLOB_UPLOAD_UNKNOWN")
    patched = http.patch(path, content=b"intruder", headers={"Content-Range": f"{len(data)}-{len(data) + 7}"})
    assert_error(patched, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(http.put(path, params={"digest": digest_of(data)}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        http.put(path, params={"digest": digest_of(data + b"x")}, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    assert_error(http.delete(path), 404, "BLOB_UPLOAD_UNKNOWN")


def assert_intact_and_completes(oci: OCIClient, repo: str, upload_id: str, data: bytes) -> None:
    path = f"/v2/{repo}/blobs/uploads/{upload_id}"
    status = oci.http.get(path)
    assert status.status_code == 204, describe(status)
    assert status.headers["Range"] == f"0-{len(data) - 1}"
    done = oci.finish_upload(path, digest_of(data))
    assert done.status_code == 201, describe(done)
    fetched = oci.http.get(f"/v2/{repo}/blobs/{digest_of(data)}", follow_redirects=True)
    assert fetched.status_code == 200 and fetched.content == data


def test_another_projects_repository_cannot_touch_an_upload(secured: RunningServer) -> None:
    """bob may push to other/app, not to team/app: naming alice's upload under his own repository
    must not reach it (it used to answer 404 to DELETE and delete its bytes all the same)."""
    data = os.urandom(64 * 1024)
    with (
        bearer_client(secured.url, ALICE, ("team/app",)) as alice,
        bearer_client(secured.url, BOB, ("other/app",)) as bob,
    ):
        upload_id = started(OCIClient(alice), "team/app", data)
        assert_not_found_by_every_verb(bob, f"/v2/other/app/blobs/uploads/{upload_id}", data)
        assert_intact_and_completes(OCIClient(alice), "team/app", upload_id, data)


def test_another_principal_cannot_touch_an_upload_in_the_same_repository(secured: RunningServer) -> None:
    """carol may push to team/app too, but alice's session is alice's."""
    data = os.urandom(32 * 1024)
    with (
        bearer_client(secured.url, ALICE, ("team/app",)) as alice,
        bearer_client(secured.url, CAROL, ("team/app",)) as carol,
    ):
        upload_id = started(OCIClient(alice), "team/app", data)
        assert_not_found_by_every_verb(carol, f"/v2/team/app/blobs/uploads/{upload_id}", data)
        assert_intact_and_completes(OCIClient(alice), "team/app", upload_id, data)


def test_the_owner_cannot_reach_an_upload_through_another_repository(secured: RunningServer) -> None:
    """Even its owner may not continue a session under another repository (another project's quota
    and permissions would apply to it)."""
    data = os.urandom(16 * 1024)
    with bearer_client(secured.url, ALICE, ("team/app", "other/app")) as alice:
        upload_id = started(OCIClient(alice), "team/app", data)
        assert_not_found_by_every_verb(alice, f"/v2/other/app/blobs/uploads/{upload_id}", data)
        assert_intact_and_completes(OCIClient(alice), "team/app", upload_id, data)


def test_basic_and_bearer_credentials_of_one_user_share_her_uploads(secured: RunningServer) -> None:
    """docker may fetch a token while another client of the same user sends Basic: same owner."""
    data = os.urandom(8 * 1024)
    with (
        bearer_client(secured.url, ALICE, ("team/app",)) as bearer,
        httpx.Client(base_url=secured.url, auth=ALICE, timeout=HTTP_TIMEOUT) as basic,
    ):
        upload_id = started(OCIClient(bearer), "team/app", data)
        assert_intact_and_completes(OCIClient(basic), "team/app", upload_id, data)


def test_without_auth_an_upload_is_bound_to_its_repository(server: RunningServer) -> None:
    data = os.urandom(16 * 1024)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        upload_id = started(oci, "bound/app", data)
        assert_not_found_by_every_verb(http, f"/v2/elsewhere/app/blobs/uploads/{upload_id}", data)
        assert_intact_and_completes(oci, "bound/app", upload_id, data)


@pytest.mark.parametrize(
    "content_range",
    [
        f"0-{'9' * 4301}",
        f"{'1' * 4301}-{'9' * 4301}",
        f"bytes=0-{'7' * 5000}/{'7' * 5000}",
        "0-9223372036854775808",  # past a signed 64-bit offset
    ],
    ids=["end", "both", "total", "int64"],
)
def test_huge_numbers_in_content_range_are_refused_with_the_specs_error(
    server: RunningServer, content_range: str
) -> None:
    """Python refuses to turn more than 4,300 digits into an int: that was a 500. It is the spec's
    416 BLOB_UPLOAD_INVALID now, and the upload goes on."""
    data = os.urandom(1024)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        upload_id = started(oci, "ranges/app", data[:512])
        path = f"/v2/ranges/app/blobs/uploads/{upload_id}"
        refused = http.patch(path, content=data[512:], headers={"Content-Range": content_range})
        assert_error(refused, 416, "BLOB_UPLOAD_INVALID")
        assert oci.patch_chunk(path, data[512:], start=512).status_code == 202
        assert_intact_and_completes(oci, "ranges/app", upload_id, data)


def test_a_second_request_cannot_write_into_an_upload_another_is_writing(server: RunningServer) -> None:
    """Two PATCHes on one upload at once wrote over each other's bytes, and a commit trusted the
    running hash of one of them: the blob then sat at its digest with other bytes in it (for every
    repository that later pushes that digest). The second request is refused now, untouched."""
    size = 2 * MiB
    genuine, junk = os.urandom(size), os.urandom(size)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        location = oci.upload_location("concurrent/app")
        upload_id = location.rsplit("/", 1)[1].split("?")[0]
        path = f"/v2/concurrent/app/blobs/uploads/{upload_id}"
        temp = server.datadir / "storage" / "uploads" / upload_id / "data"
        host, port = server.host.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            head = (
                f"PATCH {path} HTTP/1.1\r\nHost: {server.host}\r\nConnection: close\r\n"
                f"Content-Length: {size}\r\n\r\n"
            )
            slow.sendall(head.encode() + junk[: size * 3 // 4])
            deadline = time.monotonic() + 30
            while not (temp.exists() and temp.stat().st_size >= MiB):  # its first MiB is written
                assert time.monotonic() < deadline, "the stalled PATCH wrote nothing"
                time.sleep(0.05)
            meanwhile = oci.patch_chunk(path, genuine)
            slow.sendall(junk[size * 3 // 4 :])
            first = _read_response(slow)
        done = oci.finish_upload(path, digest_of(genuine))
        if done.status_code == 201:  # only if the bytes stored are the ones the digest names
            fetched = http.get(f"/v2/concurrent/app/blobs/{digest_of(genuine)}")
            assert fetched.content == genuine, "the blob's bytes are not those of its digest"
        assert_error(meanwhile, 416, "BLOB_UPLOAD_INVALID")
        assert first is not None and first.status == 202, first
        assert_error(done, 400, "DIGEST_INVALID")  # the upload holds the first request's bytes
        assert http.head(f"/v2/concurrent/app/blobs/{digest_of(genuine)}").status_code == 404
