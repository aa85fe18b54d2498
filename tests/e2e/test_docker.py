"""docker (the client most users have, through a real dockerd) against a real dockyard with auth on.

One throwaway dockerd serves the module (tests/support/docker.py), with two registries: dockyard over plain
HTTP on 127.0.0.1 (an insecure registry to docker), and dockyard over HTTPS with a certificate from
`dockyard cert`, reached as dockyard-registry.test on ::1, which the daemon verifies against the CA in its
certs.d. Images are built offline (tests/support/oci.py) and reach docker through `docker load`, or the
registry through skopeo; what docker pushes and pulls is checked against what was built: image IDs (the
config digest), layer diff IDs, manifest digests.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.auth_fixtures import Credentials, ManagementApi
from tests.e2e.conftest import dockyard_cert
from tests.support.docker import DockerClient, RunningDocker, start_docker
from tests.support.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    OciLayout,
    sha256_digest,
    uncompressed,
    write_docker_archive,
    write_oci_layout,
)
from tests.support.server import RunningServer, start_server
from tests.support.tools import ContainerTools

# One daemon for the module (its tests stay on one xdist worker: `--dist loadscope`). The exchange between
# docker and dockyard is the same on either metadata database, so the PostgreSQL pass does not run it again.
pytestmark = pytest.mark.db_independent

REGISTRY_NAME = "dockyard-registry.test"  # the HTTPS registry's name; resolves to ::1 in dockerd's hosts
ADMIN = Credentials("admin", "docker-e2e-admin-password-3")
DEVELOPER = Credentials("dev", "docker-e2e-developer-pw-4")
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT_ANY_MANIFEST = {"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}, {OCI_INDEX}"}


@dataclass
class Site:
    """One dockyard with auth on, and the name docker gives it."""

    server: RunningServer
    name: str  # host:port in image references
    admin: ManagementApi
    developer: ManagementApi


@dataclass
class DockerSetup:
    daemon: RunningDocker
    http: Site
    https: Site
    ca_file: Path  # signed the HTTPS server's certificate
    wrong_ca_file: Path  # did not


@pytest.fixture(scope="module")
def docker_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerSetup]:
    root = tmp_path_factory.mktemp("docker-e2e")
    certs = dockyard_cert(REGISTRY_NAME, root / "certs")
    wrong_certs = dockyard_cert(REGISTRY_NAME, root / "wrong-certs")
    config = {"auth": {"enabled": True}}
    env = {"DOCKYARD_ADMIN_PASSWORD": ADMIN.password}
    with ExitStack() as stack:
        http_server = start_server(root / "http", config, env=env)
        stack.callback(http_server.stop)
        tls = (certs / "server.crt", certs / "server.key")
        https_server = start_server(root / "https", config, env=env, tls=tls, bind="::1")
        stack.callback(https_server.stop)
        daemon = start_docker(
            root / "docker", insecure_registries=(http_server.host,), names={REGISTRY_NAME: "::1"}
        )
        stack.callback(daemon.stop)
        https_name = f"{REGISTRY_NAME}:{https_server.host.rsplit(':', 1)[1]}"
        daemon.trust(https_name, certs / "ca.crt")
        sites = []
        verify = ssl.create_default_context(cafile=str(certs / "ca.crt"))  # https_server's ::1 too
        for server, name in ((http_server, http_server.host), (https_server, https_name)):
            admin = ManagementApi(server.url, verify, ADMIN)
            stack.callback(admin.close)
            admin.create_user(DEVELOPER)
            developer = ManagementApi(server.url, verify, DEVELOPER)
            stack.callback(developer.close)
            sites.append(Site(server, name, admin, developer))
        yield DockerSetup(daemon, sites[0], sites[1], certs / "ca.crt", wrong_certs / "ca.crt")


@pytest.fixture
def docker(docker_setup: DockerSetup, tmp_path: Path) -> Iterator[DockerClient]:
    """A client with no login yet (its own DOCKER_CONFIG); images it leaves are removed after the test."""
    client = docker_setup.daemon.client(tmp_path / "docker-config")
    yield client
    leftover = client("image", "ls", "--quiet", "--no-trunc").stdout.split()
    if leftover:
        client("image", "rm", "--force", *set(leftover))


def new_project(site: Site, request: pytest.FixtureRequest, public: bool = False) -> str:
    """A project for this test; the developer is a developer in it."""
    name = "dk-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    site.admin.create_project(name, public=public)
    if not public:
        site.admin.add_member(name, "developer", user=DEVELOPER.username)
    return name


def load_image(docker: DockerClient, tmp_path: Path, ref: str, seed: int) -> Image:
    """Build an image offline and `docker load` it as `ref`; docker's image ID is its config digest."""
    layout = write_oci_layout(tmp_path / f"src-{seed}", layers=2, layer_size=32 * 1024, seed=seed)
    image = layout.images[0]
    archive = write_docker_archive(layout, image, tmp_path / f"image-{seed}.tar", [ref])
    docker("load", "--input", str(archive))
    assert_local_image(docker, ref, image)
    return image


def assert_local_image(docker: DockerClient, ref: str, image: Image) -> dict[str, Any]:
    found = docker.inspect(ref)
    assert found is not None, f"docker has no {ref}"
    assert found["Id"] == image.config.digest
    assert found["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    return found


def assert_served_as_built(site: Site, repository: str, tag: str, image: Image) -> str:
    """The pushed manifest names the built config and each layer unpacks to the built tar; its digest."""
    manifest = site.admin.registry.get(f"/v2/{repository}/manifests/{tag}", headers=ACCEPT_ANY_MANIFEST)
    assert manifest.status_code == 200, manifest.text
    body = manifest.json()
    assert body["config"]["digest"] == image.config.digest
    for descriptor, layer in zip(body["layers"], image.layers, strict=True):
        blob = site.admin.registry.get(
            f"/v2/{repository}/blobs/{descriptor['digest']}", follow_redirects=True
        )
        assert blob.status_code == 200, descriptor
        assert sha256_digest(blob.content) == descriptor["digest"]
        assert sha256_digest(uncompressed(blob.content)) == layer.diff_id
    return str(manifest.headers["Docker-Content-Digest"])


def refused_pull(docker: DockerClient, ref: str, repository: str) -> None:
    refused = docker("pull", ref, check=False)
    assert refused.returncode != 0
    assert f"pull access denied for {repository}" in refused.stderr, refused.stderr
    assert "docker login" in refused.stderr, refused.stderr
    assert docker.inspect(ref) is None


@pytest.mark.parametrize("transport", ["http", "https"])
def test_login_push_pull_and_logout(
    docker_setup: DockerSetup,
    docker: DockerClient,
    transport: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    site = docker_setup.http if transport == "http" else docker_setup.https
    project = new_project(site, request)
    repository = f"{project}/app"
    ref = f"{site.name}/{repository}:v1"
    image = load_image(docker, tmp_path, ref, seed=71)

    login = docker.login(site.name, DEVELOPER.username, DEVELOPER.password)
    assert "Login Succeeded" in login.stdout
    assert site.name in docker.saved_logins()
    docker("push", ref)

    digest = assert_served_as_built(site, repository, "v1", image)
    assert f"{site.name}/{repository}@{digest}" in assert_local_image(docker, ref, image)["RepoDigests"]

    docker("image", "rm", ref)
    assert docker.inspect(ref) is None
    docker("pull", ref)
    pulled = assert_local_image(docker, ref, image)
    assert pulled["RepoDigests"] == [f"{site.name}/{repository}@{digest}"]

    docker("logout", site.name)
    assert site.name not in docker.saved_logins()
    docker("image", "rm", ref)
    refused_pull(docker, ref, f"{site.name}/{repository}")


def test_login_with_a_robot_and_with_a_personal_access_token(
    docker_setup: DockerSetup, docker: DockerClient, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = docker_setup.https
    project = new_project(site, request)
    robot = site.admin.create_project_robot(project, "ci", ["pull", "push"])
    repository = f"{project}/built-by-ci"
    ref = f"{site.name}/{repository}:v1"
    image = load_image(docker, tmp_path, ref, seed=72)

    docker.login(site.name, robot.username, robot.password)
    docker("push", ref)
    assert_served_as_built(site, repository, "v1", image)
    docker("image", "rm", ref)

    personal_token = site.developer.create_personal_token("docker-e2e")
    docker.login(site.name, DEVELOPER.username, personal_token)
    docker("pull", ref)
    assert_local_image(docker, ref, image)

    wrong = docker.login(site.name, DEVELOPER.username, personal_token[:-1], check=False)
    assert wrong.returncode != 0
    assert "unauthorized" in wrong.stderr.lower(), wrong.stderr


def test_anonymous_pull_of_each_platform_of_a_public_multi_arch_image(
    docker_setup: DockerSetup,
    docker: DockerClient,
    tools: ContainerTools,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    site = docker_setup.http
    project = new_project(site, request, public=True)
    repository = f"{project}/multi"
    ref = f"{site.name}/{repository}:v1"
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    layout: OciLayout = write_oci_layout(
        tmp_path / "src", layers=1, layer_size=32 * 1024, platforms=platforms, seed=73
    )
    tools.skopeo(
        "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", ADMIN.joined,
        layout.transport_ref, f"docker://{ref}",
    )  # fmt: skip

    for image in layout.images:
        assert image.platform is not None
        docker("pull", "--platform", "/".join(image.platform), ref)
        pulled = assert_local_image(docker, ref, image)
        assert pulled["Architecture"] == image.platform[1]
        assert pulled["RepoDigests"] == [f"{site.name}/{repository}@{layout.top.digest}"]
        docker("image", "rm", ref)
    assert docker.saved_logins() == set()


def test_https_registry_is_verified_against_its_ca(docker_setup: DockerSetup, docker: DockerClient) -> None:
    site = docker_setup.https
    docker_setup.daemon.trust(site.name, docker_setup.wrong_ca_file)
    try:
        refused = docker.login(site.name, DEVELOPER.username, DEVELOPER.password, check=False)
    finally:
        docker_setup.daemon.trust(site.name, docker_setup.ca_file)
    assert refused.returncode != 0
    assert "x509: certificate signed by unknown authority" in refused.stderr, refused.stderr
    assert site.name not in docker.saved_logins()

    docker.login(site.name, DEVELOPER.username, DEVELOPER.password)
    assert site.name in docker.saved_logins()
