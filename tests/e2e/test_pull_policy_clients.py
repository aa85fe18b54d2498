"""Pull policies with real clients: a project that requires signatures refuses the pull of an unsigned
image to docker (a throwaway dockerd), podman, skopeo and containerd's `ctr`, and each shows the user
the message that names the policy; once the image's index is signed (openssl, cosign's format) every
client pulls it, its platform manifest judged by the signed index that references it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_scans_api import content, finished, wait_for
from tests.integration.test_scans_api import push_image as push_real_image
from tests.support.containerd import RunningContainerd, start_containerd
from tests.support.cosign import make_key, payload, push_sig_tag, signature_layer
from tests.support.docker import DockerClient, RunningDocker, start_docker
from tests.support.oci import write_oci_layout
from tests.support.ociclient import OCIClient, bearer_client, describe
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

# One dockerd and one containerd for the module; the exchange does not depend on the database.
pytestmark = pytest.mark.db_independent

ADMIN = ("admin", "scans-Passw0rd-1")  # test_scans_api's: its `content` fixture and helpers use it
__all__ = ["content"]  # the fixture (real Debian packages and a wheel; advisories imported)
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
    api = httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT)
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
            timeout=HTTP_TIMEOUT,
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


@pytest.fixture(scope="module")
def server(setup: Setup) -> RunningServer:
    return setup.server


def pulls(
    setup: Setup, docker: DockerClient, tmp_path: Path, ref: str | None = None
) -> dict[str, tuple[int, str]]:
    """Each client's pull of the image: (exit status, stderr)."""
    ref = ref or setup.ref
    results: dict[str, tuple[int, str]] = {}
    done = docker("pull", ref, check=False)
    results["docker"] = (done.returncode, done.stderr)
    done = setup.tools.podman("pull", "--tls-verify=false", "--creds", ":".join(ADMIN), ref, check=False)
    results["podman"] = (done.returncode, done.stderr)
    target = tmp_path / f"skopeo-{time.monotonic_ns()}"
    done = setup.tools.skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        ":".join(ADMIN),
        f"docker://{ref}",
        f"oci:{target}:v1",
        check=False,
    )
    results["skopeo"] = (done.returncode, done.stderr)
    ctr = setup.containerd.ctr("images", "pull", "--plain-http", "--user", ":".join(ADMIN), ref, check=False)
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
    while (got := httpx.get(url, auth=ADMIN, headers=accept, timeout=HTTP_TIMEOUT)).status_code != 200:
        assert MESSAGE in got.text, describe(got)
        assert time.monotonic() < deadline, "the signature was never verified"
        time.sleep(0.3)
    time.sleep(0.5)  # the other workers see the invalidation (a shared file: at once, in practice)
    allowed = pulls(setup, docker, tmp_path)
    for client, (status, stderr) in allowed.items():
        assert status == 0, (client, stderr)
    assert docker.inspect(setup.ref) is not None


def test_every_client_is_refused_a_vulnerable_image_with_the_count(
    setup: Setup, docker: DockerClient, content: dict[str, Any], tmp_path: Path
) -> None:
    api = setup.api
    assert api.post("/projects", json={"name": "vulnerable"}).status_code == 201
    assert api.put("/projects/vulnerable/scan-settings", json={"scan_on_push": True}).status_code == 200
    push_real_image(setup.server, "vulnerable/app", "v1", content["layers"])
    report = wait_for(finished(api, "/repositories/vulnerable/app/artifacts/v1/scan"), "the scan on push")
    assert report["counts"]["critical"] == 1, report
    assert api.patch("/projects/vulnerable", json={"block_severity": "critical"}).status_code == 200
    message = "1 critical vulnerability (policy: block critical)"
    refused = pulls(setup, docker, tmp_path, f"{setup.server.host}/vulnerable/app:v1")
    for client, (status, stderr) in refused.items():
        assert status != 0, (client, stderr)
        assert f"denied: {message}" in stderr, (client, stderr)
    # The finding allowlisted for the project and the image rescanned: every client pulls it.
    allowed = api.put("/projects/vulnerable/vulndb/allowlist/CVE-2099-0201", json={"reason": "not reachable"})
    assert allowed.status_code in (200, 201), describe(allowed)
    requested = api.post("/repositories/vulnerable/app/artifacts/v1/scan")
    assert requested.status_code == 202, describe(requested)
    path = "/repositories/vulnerable/app/artifacts/v1/scan"
    wait_for(finished(api, path, requested.json()["job_id"]), "the rescan")
    # The stored result bumps the repository's verdicts: every worker forgets its decisions, without
    # waiting out the 5 s they are kept (SCAN_DECISION_SECONDS, for allowlist entries that expire).
    time.sleep(0.5)  # the other workers see the invalidation (a shared file: at once, in practice)
    ref = f"{setup.server.host}/vulnerable/app:v1"
    for client, (status, stderr) in pulls(setup, docker, tmp_path, ref).items():
        assert "denied" not in stderr and "policy:" not in stderr, (client, stderr)
        # The test image's config is synthetic (no rootfs diff ids): dockerd and containerd refuse to
        # unpack it after the registry served the manifest and blobs, as they would from any registry.
        unpack = ("layers from manifest don't match image configuration", "mismatched image rootfs")
        if client in ("docker", "ctr"):
            assert status == 0 or any(text in stderr for text in unpack), (client, stderr)
        else:
            assert status == 0, (client, stderr)
