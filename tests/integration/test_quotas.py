"""Project storage quotas against a real server: early refusals with the OCI error body, nothing
half-written, shared content counted once, deletes free usage, and a race of many concurrent pushes
against the last few MiB that never passes the limit (SQLite here; PostgreSQL in the
DOCKYARD_TEST_DB=postgresql pass)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    assert_error,
    bearer_client,
    describe,
    descriptor,
    digest_of,
    image_manifest,
)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "quotas-Passw0rd")
MiB = 1024 * 1024
REPOS = (
    "quota/a",
    "quota/b",
    "race/app",
    "free/src",
    "churn/a",
    "churn/b",
    "live/app",
    "refill/a",
    "refill/b",
)


def registry_client(server: RunningServer, repos: tuple[str, ...]) -> httpx.Client:
    return bearer_client(server.url, ADMIN, repos, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("quotas"),
        {"auth": {"enabled": True}, "http": {"workers": 2}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    with httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        for project in ("quota", "race", "free", "churn", "live", "refill"):
            assert api.post("/projects", json={"name": project}).status_code == 201
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with registry_client(server, REPOS) as http:
        yield OCIClient(http)


def usage(api: httpx.Client, project: str) -> int:
    answer = api.get(f"/projects/{project}/quota")
    assert answer.status_code == 200, describe(answer)
    return int(answer.json()["used_bytes"])


def set_limit(api: httpx.Client, project: str, limit: int | None, warn: int = 80) -> dict[str, object]:
    answer = api.put(f"/projects/{project}/quota", json={"limit_bytes": limit, "warn_percent": warn})
    assert answer.status_code == 200, describe(answer)
    return dict(answer.json())


def assert_quota_denied(response: httpx.Response, project: str) -> None:
    assert_error(response, 403, "DENIED")
    error = response.json()["errors"][0]
    assert re.match(
        rf"quota of project {project} exceeded: used .+, limit .+, this (blob|manifest) .+", error["message"]
    )
    assert error["detail"]["project"] == project
    detail = error["detail"]
    # Uploads in progress count too (refused while a body streams): their bytes are in the detail.
    assert detail["used_bytes"] + detail.get("open_upload_bytes", 0) + detail["size"] > detail["limit_bytes"]


def one_request_per_connection(server: RunningServer, repos: tuple[str, ...]) -> httpx.Client:
    """A /v2 client opening a new connection for every request, so that with several server workers
    the requests land on all of them (each keeps its own caches)."""
    with registry_client(server, repos) as tokened:
        headers = dict(tokened.headers)
    return httpx.Client(
        base_url=server.url, headers=headers, timeout=120, limits=httpx.Limits(max_keepalive_connections=0)
    )


def stored(server: RunningServer, digest: str) -> bool:
    """Whether the filesystem storage holds the blob's bytes (with or without a row for them)."""
    algorithm, encoded = digest.split(":")
    return (server.datadir / "storage" / "blobs" / algorithm / encoded[:2] / encoded / "data").exists()


def test_refusals_before_the_data_is_accepted(
    server: RunningServer, oci: OCIClient, api: httpx.Client
) -> None:
    quota = set_limit(api, "quota", 4 * MiB)
    assert quota == {
        "project": "quota",
        "limit_bytes": 4 * MiB,
        "used_bytes": 0,
        "warn_percent": 80,
        "used_percent": 0.0,
    }
    shared = os.urandom(MiB)
    shared_digest = oci.push_blob("quota/a", shared)
    # The same blob in a second repository of the project (pushed, then mounted) counts once.
    oci.push_blob("quota/b", shared)
    assert usage(api, "quota") == MiB

    big = os.urandom(3 * MiB + 1)
    # Monolithic POST: refused from the headers; no upload session is left behind.
    monolithic = oci.http.post("/v2/quota/a/blobs/uploads/", params={"digest": digest_of(big)}, content=big)
    assert_quota_denied(monolithic, "quota")
    # POST then PUT with the body: refused before the body is read.
    location = oci.upload_location("quota/a")
    assert_quota_denied(oci.finish_upload(location, digest_of(big), big), "quota")
    # Chunked: the PATCH that would go past is refused; the upload stays where it was, resumable.
    location = oci.upload_location("quota/a")
    assert oci.patch_chunk(location, big[: 2 * MiB], start=0).status_code == 202
    assert_quota_denied(oci.patch_chunk(location, big[2 * MiB :], start=2 * MiB), "quota")
    status = oci.http.get(oci.url(location))
    assert status.status_code == 204 and status.headers["Range"] == f"0-{2 * MiB - 1}"
    assert oci.http.delete(oci.url(location)).status_code == 204
    # Cross-repository mount from another project into a full project.
    with registry_client(server, REPOS) as http:
        other = OCIClient(http)
        outside = other.push_blob("free/src", big)
    mount = oci.http.post(
        "/v2/quota/a/blobs/uploads/",
        params={"mount": outside, "from": "free/src"},
        headers={"Content-Length": "0"},
    )
    assert_quota_denied(mount, "quota")
    assert oci.head_blob("quota/a", outside).status_code == 404
    assert usage(api, "quota") == MiB  # nothing counted for any refused blob

    # Deletes free usage once the last repository of the project lets go.
    assert oci.http.delete(f"/v2/quota/a/blobs/{shared_digest}").status_code == 202
    assert usage(api, "quota") == MiB
    assert oci.http.delete(f"/v2/quota/b/blobs/{shared_digest}").status_code == 202
    assert usage(api, "quota") == 0
    # With room again the big blob fits.
    oci.push_blob("quota/a", big)
    assert usage(api, "quota") == len(big)


def test_manifests_count_and_limits_below_usage(oci: OCIClient, api: httpx.Client) -> None:
    set_limit(api, "free", None)
    before = usage(api, "free")
    pushed = oci.push_image("free/src", "v1", seed="manifest")
    config_and_layer = len(json.dumps({"architecture": "amd64", "os": "linux", "seed": "manifest"}).encode())
    config_and_layer += len(b"layer of free/src v1 manifest")
    assert usage(api, "free") == before + config_and_layer + len(pushed.body)
    # A limit below usage is accepted (nothing is deleted); new content is refused, old content pulls.
    quota = set_limit(api, "free", 1)
    assert quota["used_bytes"] == usage(api, "free") and quota["limit_bytes"] == 1
    config = b'{"architecture":"amd64","os":"linux","seed":"other"}'
    assert_quota_denied(
        oci.http.post("/v2/free/src/blobs/uploads/", params={"digest": digest_of(config)}, content=config),
        "free",
    )
    assert oci.get_manifest("free/src", "v1").status_code == 200
    set_limit(api, "free", None)


def test_quota_api_access(server: RunningServer, api: httpx.Client) -> None:
    assert httpx.get(f"{server.url}/api/v1/projects/quota/quota", timeout=HTTP_TIMEOUT).status_code == 401
    # A project admin reads the quota but may not change it; a developer may not even read it.
    for user, role in (("qadmin", "project_admin"), ("qdev", "developer")):
        assert (
            api.post("/users", json={"username": user, "password": "Quota-user-Passw0rd"}).status_code == 201
        )
        assert api.post("/projects/quota/members", json={"user": user, "role": role}).status_code == 201
    with httpx.Client(
        base_url=f"{server.url}/api/v1", auth=("qadmin", "Quota-user-Passw0rd"), timeout=HTTP_TIMEOUT
    ) as project_admin:
        assert project_admin.get("/projects/quota/quota").status_code == 200
        refused = project_admin.put("/projects/quota/quota", json={"limit_bytes": None, "warn_percent": 80})
        assert refused.status_code == 403
        assert project_admin.get("/projects/quota/immutable-rules").status_code == 200
    with httpx.Client(
        base_url=f"{server.url}/api/v1", auth=("qdev", "Quota-user-Passw0rd"), timeout=HTTP_TIMEOUT
    ) as developer:
        assert developer.get("/projects/quota/quota").status_code == 403
        assert developer.post("/projects/quota/immutable-rules", json={}).status_code == 403
    assert api.get("/projects/nope/quota").status_code == 404
    bad = api.put("/projects/quota/quota", json={"limit_bytes": -5, "warn_percent": 80})
    assert bad.status_code == 400


def _image(index: int) -> tuple[bytes, bytes, bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": index}).encode()
    layer = hashlib.sha256(f"race {index}".encode()).digest() * (MiB // 32)  # 1 MiB, distinct
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
    return config, layer, body


def test_concurrent_pushes_against_the_last_mib(server: RunningServer, api: httpx.Client) -> None:
    """24 threads push distinct 1 MiB images into a project with room for about 5."""
    limit = 5 * MiB + 64 * 1024
    set_limit(api, "race", limit)
    accepted: dict[str, int] = {}  # digest -> size of every blob and manifest acknowledged
    images: dict[int, bytes] = {}
    lock = threading.Lock()

    def push(index: int) -> None:
        config, layer, body = _image(index)
        with registry_client(server, ("race/app",)) as http:
            client = OCIClient(http)
            for blob in (config, layer):
                location = client.upload_location("race/app")
                answer = client.finish_upload(location, digest_of(blob), blob)
                if answer.status_code != 201:
                    assert_quota_denied(answer, "race")
                    return
                with lock:
                    accepted[digest_of(blob)] = len(blob)
            answer = client.put_manifest("race/app", f"t{index}", body, OCI_MANIFEST)
            if answer.status_code != 201:
                assert_quota_denied(answer, "race")
                return
            with lock:
                accepted[digest_of(body)] = len(body)
                images[index] = body

    threads = [threading.Thread(target=push, args=(index,)) for index in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    used = usage(api, "race")
    assert used <= limit
    assert used == sum(accepted.values())
    assert 3 <= len(images) <= 5, f"{len(images)} images fit"
    with registry_client(server, ("race/app",)) as http:
        client = OCIClient(http)
        for index, body in images.items():
            config, layer, _ = _image(index)
            manifest = client.get_manifest("race/app", f"t{index}")
            assert manifest.status_code == 200 and manifest.content == body
            for blob in (config, layer):
                fetched = http.get(f"/v2/race/app/blobs/{digest_of(blob)}", follow_redirects=True)
                assert fetched.status_code == 200 and fetched.content == blob

    # Reported through metrics too, and the warning threshold was passed: an audit event.
    metrics = httpx.get(f"{server.url}/metrics", auth=ADMIN, timeout=HTTP_TIMEOUT).text
    assert f'dockyard_project_quota_used_bytes{{project="race"}} {used}' in metrics
    assert f'dockyard_project_quota_limit_bytes{{project="race"}} {limit}' in metrics
    events = api.get("/audit", params={"action": "quota_warning", "resource_name": "race"}).json()
    assert len(events) == 1 and events[0]["resource_name"] == "race"


def test_usage_stays_exact_under_concurrent_mounts_and_deletes(
    server: RunningServer, oci: OCIClient, api: httpx.Client
) -> None:
    """One thread mounts each blob into churn/b while another deletes it from churn/a: whichever
    wins, the project counts exactly the blobs some repository still links."""
    blobs = [os.urandom(64 * 1024 + index) for index in range(12)]
    for blob in blobs:
        oci.push_blob("churn/a", blob)

    def mount(blob: bytes) -> None:
        with registry_client(server, ("churn/a", "churn/b")) as http:
            answer = http.post(
                "/v2/churn/b/blobs/uploads/",
                params={"mount": digest_of(blob), "from": "churn/a"},
                headers={"Content-Length": "0"},
            )
            if answer.status_code == 202:  # nothing left to mount: the client would upload; cancel
                http.delete(answer.headers["Location"])
            else:
                assert answer.status_code == 201, describe(answer)

    def unlink(blob: bytes) -> None:
        with registry_client(server, ("churn/a",)) as http:
            assert http.delete(f"/v2/churn/a/blobs/{digest_of(blob)}").status_code == 202

    threads = [threading.Thread(target=work, args=(blob,)) for blob in blobs for work in (unlink, mount)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    linked = [
        blob
        for blob in blobs
        if any(oci.head_blob(repo, digest_of(blob)).status_code == 200 for repo in ("churn/a", "churn/b"))
    ]
    assert usage(api, "churn") == sum(len(blob) for blob in linked)
    for blob in linked:  # and releasing the rest frees everything
        oci.http.delete(f"/v2/churn/b/blobs/{digest_of(blob)}")
    assert usage(api, "churn") == 0


def test_a_limit_set_through_the_api_holds_at_once_in_every_worker(
    server: RunningServer, api: httpx.Client
) -> None:
    """Each worker caches project limits; setting one must reach all of them before the next push.
    A worker still believing the project unlimited would accept the chunk below (refused only at the
    commit) and leave the refused blob's bytes in storage."""
    with one_request_per_connection(server, ("live/app",)) as http:
        oci = OCIClient(http)
        for index in range(8):  # every worker learns that the project is unlimited
            oci.push_blob("live/app", f"small blob {index}".encode() * 64)
        set_limit(api, "live", usage(api, "live"))  # full
        for _ in range(4):
            new = os.urandom(64 * 1024)  # bigger than anything the project holds
            location = oci.upload_location("live/app")
            assert_quota_denied(oci.patch_chunk(location, new, start=0), "live")
            assert oci.http.delete(oci.url(location)).status_code == 204
            monolithic = http.post(
                "/v2/live/app/blobs/uploads/", params={"digest": digest_of(new)}, content=new
            )
            assert_quota_denied(monolithic, "live")
            assert not stored(server, digest_of(new))
        set_limit(api, "live", usage(api, "live") + MiB)
        for _ in range(4):
            location = oci.upload_location("live/app")
            new = os.urandom(64 * 1024)
            assert oci.patch_chunk(location, new, start=0).status_code == 202
            assert oci.finish_upload(location, digest_of(new)).status_code == 201
        set_limit(api, "live", None)
        oci.push_blob("live/app", os.urandom(2 * MiB))


def test_chunked_re_upload_of_held_content_into_a_full_project(
    server: RunningServer, api: httpx.Client
) -> None:
    """skopeo and podman push every blob as POST, one PATCH with the whole blob, PUT ?digest=; a
    repository that does not have a blob yet gets it that way even when another repository of the
    project holds it. That content is already counted, so a full project takes it; new content that
    does not fit is refused and nothing of it is kept."""
    held = os.urandom(256 * 1024)
    with one_request_per_connection(server, ("refill/a", "refill/b")) as http:
        oci = OCIClient(http)
        oci.push_blob("refill/a", held)
        oci.push_blob("refill/a", b"a small blob")
        full = usage(api, "refill")
        set_limit(api, "refill", full)

        location = oci.upload_location("refill/b")
        assert oci.patch_chunk(location, held[: 100 * 1024], start=0).status_code == 202
        assert oci.patch_chunk(location, held[100 * 1024 :], start=100 * 1024).status_code == 202
        assert oci.finish_upload(location, digest_of(held)).status_code == 201
        fetched = http.get(f"/v2/refill/b/blobs/{digest_of(held)}", follow_redirects=True)
        assert fetched.status_code == 200 and fetched.content == held
        assert usage(api, "refill") == full

        # New content no bigger than what the project holds passes the chunks (it could still have
        # been a re-upload) and is refused at the PUT, where the digest is known.
        new = os.urandom(200 * 1024)
        location = oci.upload_location("refill/b")
        assert oci.patch_chunk(location, new, start=0).status_code == 202
        assert_quota_denied(oci.finish_upload(location, digest_of(new)), "refill")
        assert_error(http.get(oci.url(location)), 404, "BLOB_UPLOAD_UNKNOWN")
        # Bigger than anything the project holds: refused at the chunk, before it is read.
        bigger = os.urandom(300 * 1024)
        location = oci.upload_location("refill/b")
        assert_quota_denied(oci.patch_chunk(location, bigger, start=0), "refill")
        assert http.get(oci.url(location)).headers["Range"] == "0-0"
        assert http.delete(oci.url(location)).status_code == 204
        for refused in (new, bigger):
            assert oci.head_blob("refill/b", digest_of(refused)).status_code == 404
            assert not stored(server, digest_of(refused))
        assert usage(api, "refill") == full
