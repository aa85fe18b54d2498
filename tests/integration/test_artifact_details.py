"""What the management API tells about an artifact beyond its push: when it was last pulled, and
which platform an image is for. Against a real `dockyard serve` with auth on (the API needs it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ociclient import OCIClient, PushedManifest, descriptor, image_manifest, index_manifest
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "artifact-details-Passw0rd")
AUTH_ON = {"auth": {"enabled": True}}
ENV = {"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FLUSH_WAIT = 20.0  # the recorder writes every ~5 s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: each test pushes to repositories of its own."""
    running = start_server(tmp_path_factory.mktemp("artifact-details"), AUTH_ON, env=ENV)
    yield running
    running.stop()


@contextmanager
def oci_client(server: RunningServer) -> Iterator[OCIClient]:
    # Basic credentials straight on /v2 (accepted as well as bearer tokens).
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        yield OCIClient(http)


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with oci_client(server) as client:
        yield client


def artifacts(server: RunningServer, repository: str) -> dict[str, dict[str, Any]]:
    response = httpx.get(
        f"{server.url}/api/v1/repositories/{repository}/artifacts",
        params={"page_size": "100"},
        auth=ADMIN,
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return {item["digest"]: item for item in response.json()}


def wait_for_pull_time(server: RunningServer, repository: str, digest: str) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + FLUSH_WAIT
    while True:
        listed = artifacts(server, repository)
        if listed[digest]["pulled_at"] is not None or time.monotonic() > deadline:
            return listed
        time.sleep(0.5)


def push_image_with_config(
    oci: OCIClient, repo: str, tag: str, config: dict[str, Any], *, docker: bool = False
) -> PushedManifest:
    config_bytes = json.dumps(config).encode()
    layer = f"layer of {repo}:{tag}".encode()
    oci.push_blob(repo, config_bytes)
    oci.push_blob(repo, layer)
    body = image_manifest(
        descriptor(DOCKER_CONFIG if docker else "application/vnd.oci.image.config.v1+json", config_bytes),
        [descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer)],
        media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST,
    )
    return oci.push_manifest(repo, tag, body, DOCKER_MANIFEST if docker else OCI_MANIFEST)


def test_a_get_sets_the_pull_time_and_a_head_does_not(server: RunningServer, oci: OCIClient) -> None:
    pulled = oci.push_image("team/app", "1.0")
    headed = oci.push_image("team/app", "head-only", seed="other")
    never = oci.push_image("team/app", "never", seed="third")
    before = artifacts(server, "team/app")
    assert {before[d.digest]["pulled_at"] for d in (pulled, headed, never)} == {None}

    assert oci.get_manifest("team/app", "head-only", method="HEAD").status_code == 200
    assert oci.get_manifest("team/app", "1.0").status_code == 200
    assert oci.get_manifest("team/app", "1.0").status_code == 200  # served from the cache this time
    listed = wait_for_pull_time(server, "team/app", pulled.digest)

    pulled_at = listed[pulled.digest]["pulled_at"]
    assert pulled_at is not None, "pull time not written within the flush interval"
    moment = datetime.fromisoformat(pulled_at)
    assert (moment.second, moment.microsecond) == (0, 0)  # to the minute
    assert timedelta(minutes=-1) <= datetime.now(UTC) - moment <= timedelta(minutes=2)
    # The HEAD came before the GET, so it would have been in the same (or an earlier) flush.
    assert listed[headed.digest]["pulled_at"] is None
    assert listed[never.digest]["pulled_at"] is None

    detail = httpx.get(
        f"{server.url}/api/v1/repositories/team/app/artifacts/1.0", auth=ADMIN, timeout=HTTP_TIMEOUT
    ).json()
    assert detail["pulled_at"] == pulled_at


def test_pulls_by_digest_count_and_survive_a_restart(tmp_path: Path) -> None:
    workdir = tmp_path / "server"
    server = start_server(workdir, AUTH_ON, env=ENV)  # its own: it restarts it
    try:
        with oci_client(server) as oci:
            pushed = oci.push_image("team/web", "latest")
            assert oci.get_manifest("team/web", pushed.digest).status_code == 200
    finally:
        server.stop()  # well inside the flush interval: shutdown writes what is noted
    restarted = start_server(workdir, AUTH_ON, env=ENV)
    try:
        assert artifacts(restarted, "team/web")[pushed.digest]["pulled_at"] is not None
    finally:
        restarted.stop()


def test_images_list_their_platform_from_the_config(server: RunningServer, oci: OCIClient) -> None:
    amd64 = oci.push_image("team/multi", "amd64")  # config: linux/amd64
    arm = push_image_with_config(
        oci, "team/multi", "arm", {"os": "linux", "architecture": "arm64", "variant": "v8", "rootfs": {}}
    )
    docker = push_image_with_config(
        oci, "team/multi", "docker", {"os": "windows", "architecture": "amd64"}, docker=True
    )
    no_platform = push_image_with_config(oci, "team/multi", "bare", {"created": "2024-01-01T00:00:00Z"})
    index = oci.push_manifest(
        "team/multi",
        "all",
        index_manifest(
            [
                amd64.descriptor(platform={"os": "linux", "architecture": "amd64"}),
                arm.descriptor(platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
            ]
        ),
        OCI_INDEX,
    )
    listed = artifacts(server, "team/multi")

    def platforms(pushed: PushedManifest) -> list[tuple[str, str | None, str | None, str | None]]:
        found = listed[pushed.digest]["platforms"] or []
        return [(p["digest"], p["os"], p["architecture"], p["variant"]) for p in found]

    assert platforms(amd64) == [(amd64.digest, "linux", "amd64", None)]
    assert platforms(arm) == [(arm.digest, "linux", "arm64", "v8")]
    assert platforms(docker) == [(docker.digest, "windows", "amd64", None)]
    assert listed[no_platform.digest]["platforms"] is None
    assert platforms(index) == [
        (amd64.digest, "linux", "amd64", None),
        (arm.digest, "linux", "arm64", "v8"),
    ]


def test_a_config_that_is_not_json_does_not_fail_the_push(server: RunningServer, oci: OCIClient) -> None:
    config = b"\x00not json at all"
    oci.push_blob("team/odd", config)
    body = image_manifest(descriptor("application/vnd.oci.image.config.v1+json", config), [])
    pushed = oci.push_manifest("team/odd", "1", body, OCI_MANIFEST)
    assert artifacts(server, "team/odd")[pushed.digest]["platforms"] is None


def test_the_config_and_referrers_of_an_artifact(server: RunningServer, oci: OCIClient) -> None:
    config = {"architecture": "amd64", "os": "linux", "history": [{"created_by": "/bin/sh -c make"}]}
    image = push_image_with_config(oci, "team/contents", "1.0", config)
    signature = image_manifest(
        descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        [],
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        subject=image.descriptor(),
    )
    oci.push_blob("team/contents", b"{}")
    signed = oci.push_manifest("team/contents", "sha256-sig", signature, OCI_MANIFEST)
    base = "/api/v1/repositories/team/contents/artifacts"
    api = httpx.Client(
        base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT
    )  # the API is built on its first call

    answer = api.get(f"{base}/1.0/config")
    assert answer.status_code == 200 and answer.json() == config
    referrers = api.get(f"{base}/{image.digest}/referrers")
    assert referrers.status_code == 200
    assert referrers.json() == [
        {
            "digest": signed.digest,
            "media_type": OCI_MANIFEST,
            "artifact_type": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "size": len(signature),
            "annotations": None,
        }
    ]
    assert api.get(f"{base}/{signed.digest}/referrers").json() == []
    child = oci.push_image("team/contents", "child")
    index = index_manifest([child.descriptor(platform={"os": "linux", "architecture": "amd64"})])
    oci.push_manifest("team/contents", "multi", index, OCI_INDEX)
    no_config = api.get(f"{base}/multi/config")
    assert no_config.status_code == 404 and no_config.json()["errors"][0]["code"] == "NOT_FOUND"
    assert api.get(f"{base}/nope/config").status_code == 404
    api.close()
