"""Pull policies with real clients: a project that requires signatures refuses the pull of an unsigned
image to docker (a throwaway dockerd), podman, skopeo and containerd's `ctr`, and each shows the user
the message that names the policy; once the image's index is signed (openssl, cosign's format) every
client pulls it, its platform manifest judged by the signed index that references it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.containerd import RunningContainerd, start_containerd
from tests.support.cosign import make_key, payload, push_sig_tag, signature_layer
from tests.support.docker import DockerClient, RunningDocker, start_docker
from tests.support.oci import write_oci_layout
from tests.support.ociclient import OCIClient, bearer_client, describe
from tests.support.server import RunningServer, start_server
from tests.support.tools import ContainerTools

# One dockerd and one containerd for the module; the exchange does not depend on the database.
pytestmark = pytest.mark.db_independent

ADMIN = ("admin", "pull-policy-clients-Passw0rd")
MESSAGE = "artifact is not signed by a trusted key (policy: require signature)"
REPOSITORY = "guarded/app"


@dataclass
class Setup:
    server: RunningServer
    api: httpx.Client
    docker: RunningDocker
    containerd: RunningContainerd
    tools: ContainerTools
    ref: str  # host:port/guarded/app:v1
    index_digest: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("pull-policy-clients")
    server = start_server(
        root / "server",
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    tools = ContainerTools(root / "containers")
    docker = containerd = None
    api = httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=60)
    try:
        docker = start_docker(root / "docker", insecure_registries=(server.host,))
        containerd = start_containerd(root / "containerd")
        assert api.post("/projects", json={"name": "guarded"}).status_code == 201
        layout = write_oci_layout(
            root / "image",
            layers=1,
            layer_size=16 * 1024,
            platforms=[("linux", "amd64"), ("linux", "arm64")],
            seed=31,
        )
        ref = f"{server.host}/{REPOSITORY}:v1"
        tools.skopeo(
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            ":".join(ADMIN),
            layout.transport_ref,
            f"docker://{ref}",
        )
        head = httpx.head(
            f"{server.url}/v2/{REPOSITORY}/manifests/v1",
            auth=ADMIN,
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        assert head.status_code == 200, describe(head)
        answer = api.patch("/projects/guarded", json={"require_signature": True})
        assert answer.status_code == 200, describe(answer)
        yield Setup(server, api, docker, containerd, tools, ref, head.headers["docker-content-digest"])
    finally:
        api.close()
        if containerd is not None:
            containerd.stop()
        if docker is not None:
            docker.stop()
        tools.cleanup()
        server.stop()


@pytest.fixture
def docker(setup: Setup, tmp_path: Path) -> Iterator[DockerClient]:
    client = setup.docker.client(tmp_path / "docker-config")
    client.login(setup.server.host, *ADMIN)
    yield client
    leftover = client("image", "ls", "--quiet", "--no-trunc").stdout.split()
    if leftover:
        client("image", "rm", "--force", *set(leftover))


def pulls(setup: Setup, docker: DockerClient, tmp_path: Path) -> dict[str, tuple[int, str]]:
    """Each client's pull of the image: (exit status, stderr)."""
    results: dict[str, tuple[int, str]] = {}
    done = docker("pull", setup.ref, check=False)
    results["docker"] = (done.returncode, done.stderr)
    done = setup.tools.podman(
        "pull", "--tls-verify=false", "--creds", ":".join(ADMIN), setup.ref, check=False
    )
    results["podman"] = (done.returncode, done.stderr)
    target = tmp_path / f"skopeo-{time.monotonic_ns()}"
    done = setup.tools.skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        ":".join(ADMIN),
        f"docker://{setup.ref}",
        f"oci:{target}:v1",
        check=False,
    )
    results["skopeo"] = (done.returncode, done.stderr)
    ctr = setup.containerd.ctr(
        "images", "pull", "--plain-http", "--user", ":".join(ADMIN), setup.ref, check=False
    )
    results["ctr"] = (ctr.returncode, (ctr.stderr + ctr.stdout).decode(errors="replace"))
    return results


def test_every_client_is_refused_with_the_policy_then_pulls_once_signed(
    setup: Setup, docker: DockerClient, tmp_path: Path
) -> None:
    refused = pulls(setup, docker, tmp_path)
    for client, (status, stderr) in refused.items():
        assert status != 0, (client, stderr)
        assert MESSAGE in stderr, (client, stderr)
        assert "denied" in stderr.lower(), (client, stderr)
        print(f"{client}: {stderr.strip().splitlines()[-1]}")

    key = make_key("ecdsa", tmp_path, "release")
    answer = setup.api.post(
        "/projects/guarded/signing-keys", json={"name": "release", "public_key": key.public_pem}
    )
    assert answer.status_code == 201, describe(answer)
    body = payload(setup.index_digest, f"{setup.server.host}/{REPOSITORY}")
    with bearer_client(setup.server.url, ADMIN, (REPOSITORY,)) as http:
        oci = OCIClient(http)
        push_sig_tag(
            oci,
            REPOSITORY,
            setup.index_digest,
            [signature_layer(oci, REPOSITORY, body, key.sign(body, tmp_path))],
        )
    # The push of the signature queued its verification: no manual step.
    deadline = time.monotonic() + 60
    accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
    url = f"{setup.server.url}/v2/{REPOSITORY}/manifests/v1"
    while (got := httpx.get(url, auth=ADMIN, headers=accept)).status_code != 200:
        assert MESSAGE in got.text, describe(got)
        assert time.monotonic() < deadline, "the signature was never verified"
        time.sleep(0.3)
    time.sleep(0.5)  # the other workers see the invalidation (a shared file: at once, in practice)
    allowed = pulls(setup, docker, tmp_path)
    for client, (status, stderr) in allowed.items():
        assert status == 0, (client, stderr)
    assert docker.inspect(setup.ref) is not None
