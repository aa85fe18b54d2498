"""Mirror mode with the real clients that cannot rewrite names: containerd (`ctr` with a `hosts.toml`
mirror for docker.io, which adds `?ns=docker.io`) and docker (a throwaway dockerd with `registry-mirrors`
in daemon.json). Behind the dockyard, Debian's docker-registry on loopback plays Docker Hub: it holds
`library/mirrortest`, and the proxy project `hub` fronts it; docker.io itself is never reached (the
test machine has no route to it, and the hosts.toml's `server` is a closed loopback port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.containerd import RunningContainerd, start_containerd
from tests.support.docker import start_docker
from tests.support.oci import read_oci_layout, write_oci_layout
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

ADMIN = ("admin", "mirror-e2e-admin-password-1")
USER = ("puller", "registry2-mirror-e2e-password")
CONFIG = {
    "auth": {"enabled": True},
    "upstream": {"allowed_networks": ["127.0.0.0/8"], "total_timeout": "10s"},
    "proxy": {"namespaces": {"docker.io": "hub"}, "default_namespace": "docker.io"},
    "http": {"workers": 2},
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("mirror-e2e-upstream"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: str) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("mirror-e2e"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    with httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        endpoint = {"name": "fakehub", "url": upstream, "kind": "registry", "credentials": credentials}
        api.post("/endpoints", json=endpoint).raise_for_status()
        project = {"name": "hub", "public": True, "proxy": {"endpoint": "fakehub", "tag_ttl_seconds": 300}}
        api.post("/projects", json=project).raise_for_status()
    yield running
    running.stop()


def push_upstream(tools: ContainerTools, tmp_path: Path, upstream: str, ref: str, seed: int) -> str:
    """An image (2 layers) at `ref` on the upstream; returns its manifest digest."""
    layout = write_oci_layout(tmp_path / f"layout-{seed}", layers=2, layer_size=256 * 1024, seed=seed)
    host = upstream.removeprefix("http://")
    tools.skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"{USER[0]}:{USER[1]}",
        layout.transport_ref, f"docker://{host}/{ref}",
    )  # fmt: skip
    return layout.top.digest


def cached_digest(server: RunningServer, name: str, tag: str) -> str | None:
    answer = httpx.head(
        f"{server.url}/v2/{name}/manifests/{tag}",
        auth=ADMIN,
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=HTTP_TIMEOUT,
    )
    return answer.headers.get("docker-content-digest") if answer.status_code == 200 else None


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[RunningContainerd]:
    daemon = start_containerd(tmp_path / "containerd")
    yield daemon
    daemon.stop()


def test_ctr_pulls_docker_io_names_through_a_hosts_toml_mirror(
    server: RunningServer, upstream: str, tools: ContainerTools, containerd: RunningContainerd, tmp_path: Path
) -> None:
    digest = push_upstream(tools, tmp_path, upstream, "library/mirrortest:3.20", seed=81)
    hosts_dir = tmp_path / "certs.d"
    (hosts_dir / "docker.io").mkdir(parents=True)
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"  # were containerd to fall back: nothing there
    (hosts_dir / "docker.io" / "hosts.toml").write_text(
        f'server = "{closed}"\n\n'
        f'[host."{server.url}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    ref = "docker.io/library/mirrortest:3.20"
    containerd.ctr("images", "pull", "--hosts-dir", str(hosts_dir), ref)
    lines = containerd.ctr_text("images", "ls").splitlines()[1:]
    listed = {line.split()[0]: line.split()[2] for line in lines}
    assert listed[ref] == digest
    # It went through the cache of project `hub`, under the name the ns mapping gives it.
    assert cached_digest(server, "hub/library/mirrortest", "3.20") == digest


def test_dockerd_with_registry_mirrors_pulls_hub_names_from_the_mirror(
    server: RunningServer, upstream: str, tools: ContainerTools, tmp_path: Path
) -> None:
    digest = push_upstream(tools, tmp_path, upstream, "library/dockermirror:1.0", seed=82)
    daemon = start_docker(tmp_path / "docker", daemon_config={"registry-mirrors": [server.url]})
    try:
        docker = daemon.client(tmp_path / "docker-config")
        docker("pull", "dockermirror:1.0")  # docker.io/library/dockermirror:1.0
        found = docker.inspect("dockermirror:1.0")
        assert found is not None
        assert f"dockermirror@{digest}" in found["RepoDigests"]
        assert cached_digest(server, "hub/library/dockermirror", "1.0") == digest
        # The mirror answered: dockerd did not move on to Docker Hub (which it cannot reach here).
        assert "Attempting next endpoint" not in daemon.log(), daemon.log()[-3000:]
    finally:
        daemon.stop()


def test_skopeo_through_a_registry2_config_with_a_proxy_section(
    upstream: str, tools: ContainerTools, tmp_path: Path
) -> None:
    """A `version: 0.1` file with registry:2's `proxy:` section (credentials from REGISTRY_PROXY_*):
    every name comes through the cache bit for bit, multi-arch too; a push is refused."""
    single = write_oci_layout(tmp_path / "single", layers=2, layer_size=128 * 1024, seed=83)
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    multi = write_oci_layout(tmp_path / "multi", layers=1, layer_size=64 * 1024, platforms=platforms, seed=84)
    host = upstream.removeprefix("http://")
    creds = f"{USER[0]}:{USER[1]}"
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds, single.transport_ref,
                 f"docker://{host}/library/r2single:1")  # fmt: skip
    tools.skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds,
                 multi.transport_ref, f"docker://{host}/team/r2multi:2")  # fmt: skip
    config = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(tmp_path / "r2-storage")}},
              "proxy": {"remoteurl": upstream, "ttl": "168h"}}  # fmt: skip
    env = {"REGISTRY_PROXY_USERNAME": USER[0], "REGISTRY_PROXY_PASSWORD": USER[1],
           "DOCKYARD_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8"}  # fmt: skip
    server = start_server(tmp_path / "r2", config, env=env)
    try:
        tools.skopeo("copy", "--src-tls-verify=false", f"docker://{server.host}/library/r2single:1",
                     f"oci:{tmp_path / 'out-single'}:1")  # fmt: skip
        assert read_oci_layout(tmp_path / "out-single", "1") == (single.top, single.blobs)
        tools.skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                     f"docker://{server.host}/team/r2multi:2", f"oci:{tmp_path / 'out-multi'}:2")  # fmt: skip
        top, blobs = read_oci_layout(tmp_path / "out-multi", "2")
        assert top.digest == multi.top.digest and blobs == multi.blobs
        pushed = tools.skopeo("copy", "--dest-tls-verify=false", single.transport_ref,
                              f"docker://{server.host}/team/mine:1", check=False)  # fmt: skip
        assert pushed.returncode != 0
        assert "pushes are unsupported" in pushed.stderr, pushed.stderr
    finally:
        server.stop()
