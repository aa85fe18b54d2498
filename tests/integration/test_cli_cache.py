"""`dockyard cache warm` against a real `dockyard serve` whose proxy project fronts Debian's
docker-registry (through a counting front): a multi-platform index is prefetched whole (index, each
platform's manifest, every blob), once; afterwards pulls ask nobody upstream, by digest or fresh tag."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_cli import Cli
from tests.integration.test_proxy import USER
from tests.support.fronts import Front, running_front
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    descriptor,
    image_manifest,
    index_manifest,
)
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN_PASSWORD = "cli-cache-admin-password-1"
CONFIG = {"auth": {"enabled": True}, "upstream": {"allowed_networks": ["127.0.0.0/8"]}}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("warm-upstream"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def front(upstream: str) -> Iterator[Front]:
    with running_front(upstream) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, front: Front) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("warm"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    with httpx.Client(
        base_url=f"{running.url}/api/v1", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT
    ) as api:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        endpoint = {"name": "up", "url": front.url, "kind": "registry", "credentials": credentials}
        api.post("/endpoints", json=endpoint).raise_for_status()
        project = {"name": "hub", "public": False, "proxy": {"endpoint": "up", "tag_ttl_seconds": 600}}
        api.post("/projects", json=project).raise_for_status()
    yield running
    running.stop()


@pytest.fixture
def admin(server: RunningServer, tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "home")
    cli.home.mkdir()
    cli.login(server.url, "admin", ADMIN_PASSWORD)
    return cli


def push_index(upstream: str, repository: str, tag: str) -> tuple[str, dict[str, bytes]]:
    """A two-platform index with one layer per platform; its digest and every blob."""
    blobs: dict[str, bytes] = {}
    children = []
    with httpx.Client(base_url=upstream, auth=USER, timeout=HTTP_TIMEOUT) as http:
        client = OCIClient(http)
        for arch in ("amd64", "arm64"):
            config = json.dumps({"architecture": arch, "os": "linux"}).encode()
            layer = hashlib.sha256(arch.encode()).digest() * 20000
            for blob in (config, layer):
                client.push_blob(repository, blob)
                blobs["sha256:" + hashlib.sha256(blob).hexdigest()] = blob
            body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
            pushed = client.push_manifest(repository, f"{tag}-{arch}", body, OCI_MANIFEST)
            children.append(pushed.descriptor(platform={"architecture": arch, "os": "linux"}))
        index = client.push_manifest(repository, tag, index_manifest(children), OCI_INDEX)
    return index.digest, blobs


def test_cache_warm_prefetches_an_index_whole_and_once(
    admin: Cli, server: RunningServer, upstream: str, front: Front
) -> None:
    digest, blobs = push_index(upstream, "library/warmme", "1.0")
    front.reset()
    rows = admin.json("cache", "warm", "hub/library/warmme:1.0")
    assert rows == [
        {
            "reference": "hub/library/warmme:1.0",
            "digest": digest,
            "manifests": 3,
            "blobs": 4,
            "bytes": sum(len(b) for b in blobs.values()),
        }
    ]
    assert front.count("GET", "manifest") == 3 and front.count("GET", "blob") == 4

    # Everything is in the cache now: a client's pull asks nobody upstream.
    with httpx.Client(
        base_url=server.url + "/v2", auth=("admin", ADMIN_PASSWORD), timeout=HTTP_TIMEOUT
    ) as v2:
        index = v2.get("/hub/library/warmme/manifests/1.0", headers={"Accept": OCI_INDEX})
        assert index.status_code == 200 and index.headers["docker-content-digest"] == digest
        for child in index.json()["manifests"]:
            assert v2.get(f"/hub/library/warmme/manifests/{child['digest']}").status_code == 200
        for blob_digest, data in blobs.items():
            assert v2.get(f"/hub/library/warmme/blobs/{blob_digest}").content == data
    assert sum(front.counts.values()) == 7

    # Warm again (by digest): served from the cache, nothing upstream.
    again = admin.json("cache", "warm", f"hub/library/warmme@{digest}")
    assert again[0]["blobs"] == 4 and sum(front.counts.values()) == 7


def test_cache_warm_errors_are_one_line(admin: Cli, front: Front) -> None:
    assert "give a tag or a digest" in admin.fails("cache", "warm", "hub/library/warmme")
    assert "sha256:<64 hex digits>" in admin.fails("cache", "warm", "hub/library/warmme@sha256:abc")
    missing = admin.fails("cache", "warm", "hub/library/nothere:1")
    assert "hub/library/nothere:1" in missing and "404" in missing
