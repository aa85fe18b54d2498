"""`dockyard import-registry2`: adopt a tree written by a real registry:2 (Debian's docker-registry)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.test_backup_restore import dockyard, sqlite_config
from tests.support.ociclient import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    assert_serves_bit_for_bit,
    descriptor,
    digest_of,
    image_manifest,
    index_manifest,
)
from tests.support.server import RunningServer, free_port, require_tool
from tests.support.timeouts import HTTP_TIMEOUT


@pytest.fixture
def registry2(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running registry:2 on a free loopback port, storing under tmp: (url, storage root)."""
    binary = require_tool("docker-registry")
    root = tmp_path / "registry2"
    port = free_port()
    config = tmp_path / "registry2.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (tmp_path / "registry2.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "registry2.log").read_text()
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "registry:2 did not start"
            time.sleep(0.1)
        yield url, root
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        log.close()


def push_to_registry2(url: str) -> dict[tuple[str, str], bytes]:
    """OCI and Docker schema 2 images, an index, a nested name and a shared layer, as clients push them."""
    pushed: dict[tuple[str, str], bytes] = {}
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        images = [("library/busybox", "1.36"), ("library/busybox", "latest"), ("org/team/tool", "v2")]
        for repo, tag in images:
            manifest = oci.push_image(repo, tag, seed=f"{repo}:{tag}")
            pushed[(repo, tag)] = manifest.body
        shared = os.urandom(2 * 1024 * 1024)  # one layer in two repositories: stored once
        for repo in ("library/busybox", "org/team/tool"):
            oci.push_blob(repo, shared)
        config = json.dumps({"architecture": "amd64", "os": "linux", "docker": True}).encode()
        oci.push_blob("library/busybox", config)
        docker_body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": descriptor(DOCKER_CONFIG, config),
                "layers": [descriptor(DOCKER_LAYER, shared)],
            },
            indent=3,
        ).encode()
        pushed[("library/busybox", "docker")] = oci.push_manifest(
            "library/busybox", "docker", docker_body, DOCKER_MANIFEST
        ).body
        arm_config = json.dumps({"architecture": "arm64", "os": "linux"}).encode()
        oci.push_blob("org/team/tool", arm_config)
        arm_body = image_manifest(descriptor(OCI_CONFIG, arm_config), [descriptor(OCI_LAYER, shared)])
        arm = oci.push_manifest("org/team/tool", digest_of(arm_body), arm_body, OCI_MANIFEST)
        pushed[("org/team/tool", arm.digest)] = arm.body  # untagged: kept by digest
        index_body = index_manifest([arm.descriptor(platform={"os": "linux", "architecture": "arm64"})])
        pushed[("org/team/tool", "multi")] = oci.push_manifest(
            "org/team/tool", "multi", index_body, OCI_INDEX
        ).body
    return pushed


def assert_serves(url: str, pushed: dict[tuple[str, str], bytes]) -> None:
    """Every manifest by its reference, and every blob it names, bit for bit; and the listings."""
    oci = assert_serves_bit_for_bit(url, pushed)
    try:
        assert sorted(oci.catalog()) == ["library/busybox", "org/team/tool"]
        assert sorted(oci.tags("library/busybox") or []) == ["1.36", "docker", "latest"]
        assert sorted(oci.tags("org/team/tool") or []) == ["multi", "v2"]
    finally:
        oci.http.close()


def test_import_of_a_real_registry2_tree_serves_every_image_and_tag_bit_for_bit(
    registry2: tuple[str, Path], make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    url, root = registry2
    pushed = push_to_registry2(url)
    registry2_blobs = root / "docker" / "registry" / "v2" / "blobs"
    assert registry2_blobs.is_dir()
    config = tmp_path / "dockyard.yml"
    datadir = tmp_path / "dockyard"
    config.write_text(yaml.safe_dump(sqlite_config(datadir)))

    imported = dockyard("import-registry2", root, config=config)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    # Blobs: three small images' config + layer, the shared layer once, two more configs. The
    # manifests live in the DB, not as blobs. Same filesystem: hard links, no second copy.
    assert "imported 2 repositories, 6 manifests, 5 tags, 9 blobs (9 hard-linked, 0 copied" in imported.stdout

    layer = json.loads(pushed[("library/busybox", "docker")])["layers"][0]["digest"]
    hex_digest = layer.split(":")[1]
    ours = datadir / "storage" / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"
    theirs = registry2_blobs / "sha256" / hex_digest[:2] / hex_digest / "data"
    assert ours.stat().st_ino == theirs.stat().st_ino

    again = dockyard("import-registry2", root, config=config)  # idempotent
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 manifests, 5 tags, 9 blobs (0 hard-linked, 0 copied, 9 already present)" in again.stdout

    server = make_server(sqlite_config(datadir))
    assert_serves(server.url, pushed)


def test_import_refuses_a_directory_that_is_not_a_registry2_tree(tmp_path: Path) -> None:
    config = tmp_path / "dockyard.yml"
    config.write_text(yaml.safe_dump(sqlite_config(tmp_path / "data")))
    (tmp_path / "empty").mkdir()
    result = dockyard("import-registry2", tmp_path / "empty", config=config)
    assert result.returncode == 1
    assert "not a registry:2 storage root" in result.stderr


def test_a_corrupt_blob_in_the_tree_is_reported_and_only_what_needs_it_is_left_out(
    registry2: tuple[str, Path], make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    url, root = registry2
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        broken = json.loads(oci.push_image("demo/broken", "v1").body)
        fine = oci.push_image("demo/fine", "v1")
    layer = broken["layers"][0]["digest"].split(":")[1]
    data = root / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    data.write_bytes(b"X" + data.read_bytes()[1:])
    config = tmp_path / "dockyard.yml"
    config.write_text(yaml.safe_dump(sqlite_config(tmp_path / "dockyard")))

    imported = dockyard("import-registry2", root, config=config)
    assert imported.returncode == 1
    assert f"blob sha256:{layer}: corrupt in the registry:2 tree" in imported.stderr
    assert "demo/broken:v1: not imported" in imported.stderr
    assert "imported 2 repositories, 1 manifests, 1 tags" in imported.stdout

    server = make_server(sqlite_config(tmp_path / "dockyard"))
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        assert OCIClient(http).get_manifest("demo/fine", "v1").content == fine.body
        assert OCIClient(http).get_manifest("demo/broken", "v1").status_code == 404


def test_import_into_storage_without_local_paths_copies_through_the_driver(
    registry2: tuple[str, Path], tmp_path: Path
) -> None:
    """The in-memory driver has no local files to hard-link into: the bytes go through the driver,
    and the API (not only the CLI) is idempotent."""
    from dockyard.app import build_services
    from dockyard.config.loader import load_settings
    from dockyard.maintenance.import_registry2 import import_registry2

    url, root = registry2
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        pushed = OCIClient(http).push_image("mem/image", "v1")
    config = tmp_path / "dockyard.yml"
    config.write_text(yaml.safe_dump({**sqlite_config(tmp_path / "data"), "storage": {"inmemory": {}}}))
    services = build_services(load_settings(config, {}))
    try:
        first = import_registry2(root, services)
        counts = (first.blobs, first.blobs_copied, first.blobs_linked, first.manifests, first.tags)
        assert counts == (2, 2, 0, 1, 1)
        assert not first.problems
        second = import_registry2(root, services)
        assert (second.blobs_present, second.blobs_copied, second.manifests, second.tags) == (2, 0, 1, 1)
        record = services.registry.get_manifest("mem/image", "v1")
        assert record.content == pushed.body
        for blob in json.loads(pushed.body)["layers"]:
            with services.blobs.open(blob["digest"]) as stream:
                assert digest_of(stream.read()) == blob["digest"]
    finally:
        services.close()
