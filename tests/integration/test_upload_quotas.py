"""Uploads in progress count against the project's quota as their bytes arrive, and no upload holds more
than `storage.uploads.max_size`. One streamed PATCH without a Content-Length used to put 30 MiB into a
project with a 1 MiB quota. Real servers, SQLite here and PostgreSQL in the DOCKYARD_TEST_DB=postgresql
pass."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support.ociclient import (
    OCIClient,
    RawResponse,
    assert_error,
    bearer_client,
    describe,
    digest_of,
    raw_chunked_request,
    raw_error_codes,
)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "upload-quotas-Passw0rd")
MiB = 1024 * 1024
KiB = 1024
PROJECTS = ("tight", "shared", "full", "parallel", "closing")
REPOS = tuple(f"{project}/app" for project in PROJECTS)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("upload-quotas"),
        {"auth": {"enabled": True}, "storage": {"uploads": {"max_size": "8MiB"}}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    with httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        for project in PROJECTS:
            assert api.post("/projects", json={"name": project}).status_code == 201
    yield running
    running.stop()


@pytest.fixture
def api(secured: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{secured.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture
def http(secured: RunningServer) -> Iterator[httpx.Client]:
    with bearer_client(secured.url, ADMIN, (*REPOS, "unlimited/app"), timeout=60) as client:
        yield client


def set_limit(api: httpx.Client, project: str, limit: int | None) -> None:
    answer = api.put(f"/projects/{project}/quota", json={"limit_bytes": limit, "warn_percent": 80})
    assert answer.status_code == 200, describe(answer)


def usage(api: httpx.Client, project: str) -> int:
    return int(api.get(f"/projects/{project}/quota").json()["used_bytes"])


def streamed_patch(server: RunningServer, http: httpx.Client, location: str, body: bytes) -> RawResponse:
    """A PATCH whose body comes chunked, without a Content-Length, as docker sends a layer."""
    target = httpx.URL(location).raw_path.decode()
    headers = {"Authorization": http.headers["Authorization"], "Content-Type": "application/octet-stream"}
    answer = raw_chunked_request(server.host, "PATCH", target, headers, body, timeout=30)
    assert answer is not None, "no answer to the streamed PATCH"
    return answer


def held_bytes(http: httpx.Client, location: str) -> int:
    """How many bytes the upload holds, as GET on it reports."""
    status = http.get(location)
    assert status.status_code == 204, describe(status)
    return int(status.headers["Range"].split("-")[1]) + 1 if status.headers["Range"] != "0-0" else 0


def upload_dirs(server: RunningServer) -> int:
    root = server.datadir / "storage" / "uploads"
    return sum(1 for _ in root.iterdir()) if root.exists() else 0


def test_a_streamed_patch_stops_at_the_quota(
    secured: RunningServer, api: httpx.Client, http: httpx.Client
) -> None:
    set_limit(api, "tight", MiB)
    oci = OCIClient(http)
    location = oci.upload_location("tight/app")
    answer = streamed_patch(secured, http, location, os.urandom(30 * MiB))
    assert answer.status == 403 and raw_error_codes(answer) == ["DENIED"], answer
    assert b"quota of project tight exceeded" in answer.body
    # What arrived until then stays, consistent: at most the room there was; the client may cancel it.
    kept = held_bytes(http, location)
    assert 0 < kept <= MiB
    upload_id = location.rsplit("/", 1)[1].split("?")[0]
    temp = secured.datadir / "storage" / "uploads" / upload_id / "data"
    assert temp.stat().st_size == kept
    assert http.delete(location).status_code == 204
    assert not temp.exists()
    assert usage(api, "tight") == 0


def test_a_streamed_closing_put_stops_at_the_quota_and_keeps_what_fitted(
    secured: RunningServer, api: httpx.Client, http: httpx.Client
) -> None:
    """A PUT that brings a body and commits writes the body's last pieces in the step that commits: one
    refused there still keeps what fitted, commits nothing, and the upload goes on."""
    set_limit(api, "closing", 600 * KiB)
    oci = OCIClient(http)
    location = oci.upload_location("closing/app")
    body = os.urandom(900 * KiB)
    target = httpx.URL(location).copy_merge_params({"digest": digest_of(body)}).raw_path.decode()
    headers = {"Authorization": http.headers["Authorization"], "Content-Type": "application/octet-stream"}
    answer = raw_chunked_request(secured.host, "PUT", target, headers, body, timeout=30)
    assert answer is not None and answer.status == 403, answer
    assert raw_error_codes(answer) == ["DENIED"], answer
    assert http.head(f"/v2/closing/app/blobs/{digest_of(body)}").status_code == 404
    assert usage(api, "closing") == 0
    kept = held_bytes(http, location)
    assert 0 < kept <= 600 * KiB
    # The kept bytes are the body's first ones: the upload completes with them.
    assert oci.finish_upload(location, digest_of(body[:kept])).status_code == 201
    assert usage(api, "closing") == kept


def test_open_uploads_share_the_room(secured: RunningServer, api: httpx.Client, http: httpx.Client) -> None:
    set_limit(api, "shared", MiB)
    oci = OCIClient(http)
    first, second = oci.upload_location("shared/app"), oci.upload_location("shared/app")
    assert oci.patch_chunk(first, os.urandom(700 * KiB), start=0).status_code == 202
    # 700 KiB are open already: another 700 KiB would pass the limit, refused before it is read.
    refused = oci.patch_chunk(second, os.urandom(700 * KiB), start=0)
    assert_error(refused, 403, "DENIED")
    assert refused.json()["errors"][0]["detail"]["open_upload_bytes"] == 700 * KiB
    assert held_bytes(http, second) == 0
    # The room comes back when the first upload goes (cancelled here; committed would do too).
    assert http.delete(first).status_code == 204
    blob = os.urandom(700 * KiB)
    assert oci.patch_chunk(second, blob, start=0).status_code == 202
    assert oci.finish_upload(second, digest_of(blob)).status_code == 201
    assert usage(api, "shared") == len(blob)


def test_a_full_project_takes_a_re_upload_but_no_more_than_it_holds(
    secured: RunningServer, api: httpx.Client, http: httpx.Client
) -> None:
    """skopeo re-sends a blob the project holds as POST, one PATCH (streamed), PUT: that still works in a
    full project, but a streamed PATCH of anything else stops at the size of the largest blob held."""
    held = os.urandom(256 * KiB)
    oci = OCIClient(http)
    oci.push_blob("full/app", held)
    set_limit(api, "full", usage(api, "full"))

    again = oci.upload_location("full/app")
    answer = streamed_patch(secured, http, again, held)
    assert answer.status == 202, answer
    assert oci.finish_upload(again, digest_of(held)).status_code == 201

    junk = oci.upload_location("full/app")
    answer = streamed_patch(secured, http, junk, os.urandom(8 * MiB))
    assert answer.status == 403 and raw_error_codes(answer) == ["DENIED"], answer
    assert 0 < held_bytes(http, junk) <= len(held)
    assert http.delete(junk).status_code == 204


def test_concurrent_streams_share_the_room(
    secured: RunningServer, api: httpx.Client, http: httpx.Client
) -> None:
    """Four streamed PATCHes at once into a project with room for one: together they keep no more than
    the room (one worker here: exact within a process)."""
    set_limit(api, "parallel", 2 * MiB)
    oci = OCIClient(http)
    locations = [oci.upload_location("parallel/app") for _ in range(4)]
    answers: list[RawResponse] = []

    def stream(location: str) -> None:
        answers.append(streamed_patch(secured, http, location, os.urandom(2 * MiB)))

    threads = [threading.Thread(target=stream, args=(location,)) for location in locations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer.status for answer in answers).count(403) >= 1
    assert sum(held_bytes(http, location) for location in locations) <= 2 * MiB
    for location in locations:
        assert http.delete(location).status_code == 204


def test_no_upload_holds_more_than_the_limit_for_one(secured: RunningServer, http: httpx.Client) -> None:
    """storage.uploads.max_size (8 MiB on this server), with or without a quota."""
    oci = OCIClient(http)
    before = upload_dirs(secured)
    # Declared too big: refused before a byte is read, nothing kept.
    big = os.urandom(8 * MiB + 1)
    monolithic = http.post("/v2/unlimited/app/blobs/uploads/", params={"digest": digest_of(big)}, content=big)
    assert_error(monolithic, 413, "BLOB_UPLOAD_INVALID")
    location = oci.upload_location("unlimited/app")
    assert oci.patch_chunk(location, big[: 5 * MiB], start=0).status_code == 202
    assert_error(oci.patch_chunk(location, big[5 * MiB :], start=5 * MiB), 413, "BLOB_UPLOAD_INVALID")
    assert_error(oci.finish_upload(location, digest_of(big), big[5 * MiB :]), 413, "BLOB_UPLOAD_INVALID")
    assert held_bytes(http, location) == 5 * MiB
    # Streamed: stopped at the limit; what arrived stays.
    answer = streamed_patch(secured, http, location, big[5 * MiB :])
    assert answer.status == 413 and raw_error_codes(answer) == ["BLOB_UPLOAD_INVALID"], answer
    assert held_bytes(http, location) == 8 * MiB
    assert oci.finish_upload(location, digest_of(big[: 8 * MiB])).status_code == 201  # exactly the limit
    # A monolithic POST stopped mid-body leaves no session behind (nobody knows its id).
    answer_post = raw_chunked_request(
        secured.host,
        "POST",
        f"/v2/unlimited/app/blobs/uploads/?digest={digest_of(big)}",
        {"Authorization": http.headers["Authorization"]},
        big,
        timeout=30,
    )
    assert answer_post is not None and answer_post.status == 413, answer_post
    assert upload_dirs(secured) == before
