"""Replication continues a blob cut off midway, with real peers on loopback and a front that drops the
connection once after some bytes (tests/support/fronts.py), counting what it forwards: a pull from
Debian's docker-registry whose blob GET is cut (the copy asks for the rest with a Range), a push into
distribution v3.1.1 whose upload body is cut (the copy asks the upload's status and PATCHes the rest),
and a push into docker-registry, which drops an upload cut off (the copy starts it again). Each image
is read back from the other side bit for bit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_replication import (
    ADMIN,
    CONFIG,
    USER,
    assert_same,
    local_http,
    push_image,
    run_policy,
)
from tests.support.fronts import Front, running_front
from tests.support.ociclient import OCIClient
from tests.support.registry2 import distribution_v3, running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

LAYER = 6 << 20  # bytes of the big layer; the cut comes a third of the way in
CUT = 2 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("resume-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        for project in ("team", "pulled"):
            assert client.post("/projects", json={"name": project}).status_code == 201
        yield client


def _endpoint(api: httpx.Client, name: str, front: Front) -> None:
    credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
    answer = api.post("/endpoints", json={"name": name, "url": front.url, "credentials": credentials})
    assert answer.status_code == 201, answer.text


def _policy(api: httpx.Client, **body: object) -> None:
    answer = api.post("/replication/policies", json=body)
    assert answer.status_code == 201, answer.text


def _layer_size(run: dict[str, object]) -> int:
    return int(run["counters"]["bytes_copied"])  # type: ignore[index]


def test_a_pull_cut_off_mid_blob_continues_with_a_range(
    server: RunningServer, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with (
        running_registry2(tmp_path_factory.mktemp("resume-pull"), USER) as url,
        running_front(url) as front,
    ):
        front.keep_host = True
        _endpoint(api, "pull-source", front)
        with httpx.Client(base_url=url, auth=USER, timeout=HTTP_TIMEOUT) as remote:
            image = push_image(OCIClient(remote), "vendor/big", "1", "resume-pull", layer_size=LAYER)
        _policy(
            api,
            name="pull-resume",
            endpoint="pull-source",
            direction="pull",
            repositories="vendor/big",
            dest_namespace="pulled",
        )
        front.reset()
        front.keep_host = True
        front.cut_blob_once_after = CUT
        run = run_policy(api, "pull-resume")
        assert run["status"] == "succeeded", json.dumps(run, indent=1)
        total = sum(len(data) for data in image.blobs.values())
        # The cut layer was not sent again from its first byte: what the source served is the blobs once.
        assert front.blob_bytes == total, (front.blob_bytes, total)
        assert front.count("GET", "blob") == len(image.blobs) + 1  # one more: the rest of the cut one
        with local_http(server, "pulled/big") as http:
            assert_same(http, "pulled/big", "1", image)


@pytest.mark.parametrize("peer", ["distribution-v3", "docker-registry"])
def test_a_push_cut_off_mid_upload_continues_where_the_registry_holds(
    peer: str, server: RunningServer, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """distribution v3.1.1 keeps the bytes of an upload cut off: the copy asks how many (a GET on the
    upload's URL) and PATCHes the rest, so every byte goes across once. docker-registry (2.8) drops
    such an upload: the copy starts a fresh one. Either way the image reads back bit for bit."""
    command = distribution_v3() if peer == "distribution-v3" else None
    repository = f"team/push-{peer}"
    with (
        running_registry2(tmp_path_factory.mktemp(f"resume-{peer}"), USER, command) as url,
        running_front(url) as front,
    ):
        front.keep_host = True
        _endpoint(api, f"to-{peer}", front)
        with local_http(server, repository) as http:
            image = push_image(OCIClient(http), repository, "1", f"resume-{peer}", layer_size=LAYER)
        _policy(api, name=f"push-{peer}", endpoint=f"to-{peer}", direction="push", repositories=repository)
        front.cut_upload_once_after = CUT
        run = run_policy(api, f"push-{peer}")
        assert run["status"] == "succeeded", json.dumps(run, indent=1)
        total = sum(len(data) for data in image.blobs.values())
        if peer == "distribution-v3":
            assert front.upload_bytes == total, (front.upload_bytes, total)
            assert front.count("PATCH", "upload") == 1  # the rest of the cut layer
            assert front.count("GET", "upload") == 1  # its status
        else:
            # the cut layer is one of the blobs: its first CUT bytes went twice
            assert front.upload_bytes == total + CUT, (front.upload_bytes, total)
        with httpx.Client(base_url=url, auth=USER, timeout=HTTP_TIMEOUT) as remote:
            assert_same(remote, repository, "1", image)
