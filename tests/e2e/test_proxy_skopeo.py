"""Pulls through a proxy project (the pull-through cache) with skopeo and podman: a real dockyard in
front of Debian's docker-registry behind htpasswd. Images come out bit for bit, by tag and by digest,
multi-arch indexes too; with the upstream process stopped, what was cached keeps being pulled (stale)
by tag and by digest, and a miss fails quickly with an error naming the upstream's failure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import read_oci_layout, write_oci_layout
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

ADMIN = ("admin", "proxy-e2e-admin-password-1")
USER = ("puller", "registry2-e2e-password")
TIMEOUT = 3
CONFIG = {
    "auth": {"enabled": True},
    "upstream": {
        "allowed_networks": ["127.0.0.0/8"],
        "total_timeout": f"{TIMEOUT}s",
        "connect_timeout": "2s",
    },
    "http": {"workers": 2},
}
SRC_PLAIN = "--src-tls-verify=false"
DEST_PLAIN = "--dest-tls-verify=false"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("proxy-e2e"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


def make_proxy(server: RunningServer, name: str, upstream: str, ttl: int) -> None:
    """Endpoint and public proxy project `name` of `upstream` (with the htpasswd user)."""
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        endpoint = {"name": name, "url": upstream, "kind": "registry", "credentials": credentials}
        api.post("/endpoints", json=endpoint).raise_for_status()
        project = {"name": name, "public": True, "proxy": {"endpoint": name, "tag_ttl_seconds": ttl}}
        api.post("/projects", json=project).raise_for_status()


def push_upstream(tools: ContainerTools, layout_ref: str, upstream: str, ref: str, *args: str) -> None:
    host = upstream.removeprefix("http://")
    creds = f"{USER[0]}:{USER[1]}"
    tools.skopeo("copy", *args, DEST_PLAIN, "--dest-creds", creds, layout_ref, f"docker://{host}/{ref}")


def test_skopeo_pulls_through_the_cache_bit_for_bit_and_stale_when_the_upstream_stops(
    server: RunningServer, tools: ContainerTools, tmp_path: Path
) -> None:
    single = write_oci_layout(tmp_path / "single", layers=3, layer_size=512 * 1024, seed=31)
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    multi = write_oci_layout(tmp_path / "multi", layers=2, layer_size=64 * 1024, platforms=platforms, seed=32)
    uncached = write_oci_layout(tmp_path / "uncached", layers=1, layer_size=1024, seed=33)
    with running_registry2(tmp_path / "upstream", USER) as upstream:
        push_upstream(tools, single.transport_ref, upstream, "team/app:1.0")
        push_upstream(tools, multi.transport_ref, upstream, "team/multi:2.0", "--all", "--preserve-digests")
        push_upstream(tools, uncached.transport_ref, upstream, "team/app:never-pulled")
        make_proxy(server, "cache", upstream, ttl=0)  # every pull by tag asks upstream

        by_tag = f"docker://{server.host}/cache/team/app:1.0"
        by_digest = f"docker://{server.host}/cache/team/app@{single.top.digest}"
        tools.skopeo("copy", SRC_PLAIN, by_tag, f"oci:{tmp_path / 'out-tag'}:1.0")
        assert read_oci_layout(tmp_path / "out-tag", "1.0") == (single.top, single.blobs)
        tools.skopeo("copy", SRC_PLAIN, by_digest, f"oci:{tmp_path / 'out-digest'}:1.0")
        assert read_oci_layout(tmp_path / "out-digest", "1.0") == (single.top, single.blobs)

        multi_tag = f"docker://{server.host}/cache/team/multi:2.0"
        tools.skopeo(
            "copy", "--all", "--preserve-digests", SRC_PLAIN, multi_tag, f"oci:{tmp_path / 'out-multi'}:2.0"
        )
        top, blobs = read_oci_layout(tmp_path / "out-multi", "2.0")
        assert top.digest == multi.top.digest and blobs == multi.blobs

    # The upstream process is gone: what was cached is still pulled, by tag (stale: the TTL is 0)
    # and by digest, bit for bit.
    tools.skopeo("copy", SRC_PLAIN, by_tag, f"oci:{tmp_path / 'stale-tag'}:1.0")
    assert read_oci_layout(tmp_path / "stale-tag", "1.0") == (single.top, single.blobs)
    tools.skopeo("copy", SRC_PLAIN, by_digest, f"oci:{tmp_path / 'stale-digest'}:1.0")
    assert read_oci_layout(tmp_path / "stale-digest", "1.0") == (single.top, single.blobs)
    tools.skopeo("copy", "--all", SRC_PLAIN, multi_tag, f"oci:{tmp_path / 'stale-multi'}:2.0")
    assert read_oci_layout(tmp_path / "stale-multi", "2.0")[1] == multi.blobs

    # A miss: a clear error naming the upstream's failure, quickly.
    started = time.monotonic()
    failed = tools.skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"docker://{server.host}/cache/team/app:never-pulled",
        check=False,
    )
    assert failed.returncode != 0
    assert time.monotonic() - started < TIMEOUT + 10
    assert "503 Service Unavailable" in failed.stderr, failed.stderr  # skopeo shows no 503 body
    token = httpx.get(
        f"{server.url}/token",
        params={"service": "dockyard", "scope": "repository:cache/team/app:pull"},
        timeout=HTTP_TIMEOUT,
    ).json()["token"]
    answer = httpx.get(
        f"{server.url}/v2/cache/team/app/manifests/never-pulled",
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    error = answer.json()["errors"][0]
    assert (answer.status_code, error["code"]) == (503, "UNAVAILABLE")
    assert "endpoint 'cache'" in error["message"] and "cannot reach the upstream" in error["message"], error

    assert "proxy: serving team/app:1.0 from the cache (stale)" in server.log()


def test_podman_pulls_through_the_cache(server: RunningServer, tools: ContainerTools, tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=128 * 1024, seed=41)
    image = layout.images[0]
    with running_registry2(tmp_path / "upstream", USER) as upstream:
        push_upstream(tools, layout.transport_ref, upstream, "team/podman:1.0")
        make_proxy(server, "podcache", upstream, ttl=300)
        remote = f"{server.host}/podcache/team/podman:1.0"
        tools.podman("pull", "--quiet", "--tls-verify=false", remote)
    [inspected] = json.loads(tools.podman("image", "inspect", remote).stdout)
    assert inspected["Id"] == image.config.digest.removeprefix("sha256:")
    assert inspected["Digest"] == layout.top.digest
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    # Within the TTL with the upstream gone: the tag is answered from the cache.
    tools.podman("rmi", "--force", remote)
    tools.podman("pull", "--quiet", "--tls-verify=false", remote)
