"""dockyard's image (deploy/Dockerfile, `make image`) run with docker the way registry:2 users run theirs.

One throwaway dockerd (tests/images/conftest.py) loads the image `make image` built and runs it with
`--network host` (this machine's dockerd has no bridge), listening on a free loopback port: the one
change from `docker run -p 5000:5000 dockyard`. One container, on a named volume, goes through the life
of a registry: first start (the admin password in its log, once), push and pull with docker, `docker stop`
while an upload is in flight (it drains), `docker kill` under pushes (nothing acknowledged is lost), a
backup while it runs, and the upgrade routine of docs/container.md. Another one takes a registry:2
config.yml mounted where registry:2 reads it, plus REGISTRY_* variables.

One daemon for the directory (test_compose's too: they go to one xdist worker together) and one registry
container for the module. It runs in one pass only (tests/conftest.py, DB_INDEPENDENT_PATHS).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.docker import DockerClient
from tests.support.images import DOCKYARD_IMAGE, Container, ImagesDaemon, image_config
from tests.support.oci import write_docker_archive, write_oci_layout
from tests.support.ociclient import OCIClient, bearer_client, describe, digest_of
from tests.support.server import free_port
from tests.support.timeouts import HTTP_TIMEOUT

MiB = 1024 * 1024
SIZE_BUDGET = 150 * 1000 * 1000  # bytes, as `docker images` counts them
VOLUME = "dockyard-data"
NAME = "dockyard"
# docker stop's grace: longer than http.drain_timeout (30 s), as docs/container.md says to give it.
STOP_TIMEOUT = "40"


@pytest.fixture(scope="module")
def docker(images_daemon: ImagesDaemon) -> DockerClient:
    images_daemon.load("dockyard")
    return images_daemon.client("container-config")


def run_registry(
    docker: DockerClient, name: str, port: int, *options: str, image: str = DOCKYARD_IMAGE
) -> Container:
    """`docker run -d`, then wait until it is ready. The image's health check runs every 5 s, not 30:
    sooner "healthy" for the tests that wait for it."""
    address = f"DOCKYARD_HTTP_ADDR=127.0.0.1:{port}"
    docker("run", "--detach", "--name", name, "--network", "host", "--health-interval", "5s",
           "--stop-timeout", STOP_TIMEOUT, "--env", address, *options, image)  # fmt: skip
    container = Container(docker, name)
    container.wait_ready(f"http://127.0.0.1:{port}")
    return container


@pytest.fixture(scope="module")
def registry(docker: DockerClient) -> Iterator[tuple[Container, str]]:
    """The registry, started as `make serve` starts: defaults, data in a named volume; its URL."""
    port = free_port()
    container = run_registry(docker, NAME, port, "--volume", f"{VOLUME}:/var/lib/dockyard")
    yield container, f"http://127.0.0.1:{port}"
    docker("rm", "--force", NAME, check=False)


def admin_password(container: Container) -> str:
    shown = container.admin_passwords_shown()
    assert len(shown) == 1, f"the admin password was shown {len(shown)} times:\n{container.logs()}"
    return shown[0]


def load_image(docker: DockerClient, tmp_path: Path, ref: str, seed: int) -> str:
    """A small image made offline, `docker load`ed as `ref`; its image ID."""
    layout = write_oci_layout(tmp_path / f"layout-{seed}", layers=2, layer_size=48 * 1024, seed=seed)
    archive = write_docker_archive(layout, layout.images[0], tmp_path / f"image-{seed}.tar", [ref])
    docker("load", "--input", str(archive))
    return layout.images[0].config.digest


def pull_id(docker: DockerClient, ref: str) -> str:
    docker("image", "rm", "--force", ref, check=False)
    docker("pull", ref)
    found = docker.inspect(ref)
    assert found is not None
    return str(found["Id"])


def test_the_image_is_small_unprivileged_and_only_a_runtime(docker: DockerClient) -> None:
    config = image_config(docker, DOCKYARD_IMAGE)
    assert config["Size"] < SIZE_BUDGET, f"{config['Size'] / 1e6:.0f} MB"
    assert config["Config"]["User"] == "10000:10000"
    assert list(config["Config"]["Volumes"]) == ["/var/lib/dockyard"]
    assert list(config["Config"]["ExposedPorts"]) == ["5000/tcp"]
    assert "healthcheck.py" in " ".join(config["Config"]["Healthcheck"]["Test"])
    # The entrypoint runs programs as given: no package manager, compiler or pip came along.
    script = (
        "python3 -c 'import os; print(os.getuid(), os.getgid())';"
        "for tool in apt-get dpkg perl pip gcc strip; do command -v $tool || true; done"
    )
    found = docker("run", "--rm", "--network", "none", DOCKYARD_IMAGE, "sh", "-c", script).stdout
    assert found.split() == ["10000", "10000"]
    # registry:2's command form: a config file is `serve --config FILE`.
    served = docker("run", "--rm", "--network", "none", DOCKYARD_IMAGE, "/etc/x/config.yml", check=False)
    assert served.returncode == 2 and "/etc/x/config.yml: cannot read" in served.stderr, served


# Serve's main process in the image, as `docker run IMAGE` starts it (cli.entry), up to where Granian
# would fork the workers: what it compiled from text that its table lacked, and which modules it loaded
# without bytecode.
SERVE_UNTIL_THE_FORK = """
import gc, json, os, sys
gc.disable()
os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"  # as cli.entry sets it
from dockyard.cli import startup_cache
startup_cache.install()
new = []
parts = startup_cache._pattern_parts
startup_cache._pattern_parts = lambda pattern, flags: new.append(repr(pattern)) or parts(pattern, flags)
text = startup_cache._compile
startup_cache._compile = lambda source, *args, **kwargs: new.append(source) or text(source, *args, **kwargs)
import granian
from dockyard.cli import server

def stop_here(self):
    no_bytecode = [name for name, module in list(sys.modules.items())
                   if getattr(module, "__cached__", None) and not os.path.exists(module.__cached__)]
    print(json.dumps({"uid": os.getuid(), "new": new, "no_bytecode": no_bytecode}), flush=True)
    os._exit(0)

granian.Granian.serve = stop_here
server.start_job_worker = lambda settings: None
sys.argv = ["dockyard", "serve"]
from dockyard.cli.entry import main
main()
"""


def test_a_containers_first_start_compiles_nothing_the_build_could(docker: DockerClient) -> None:
    """Serve keeps what its imports compile from text beside its bytecode; in the image it runs as 10000
    and cannot write under /opt, so the build writes both (`python -m dockyard.cli.prime`): a container's
    first start is as fast as a second start on a host (issue 18)."""
    password = "DOCKYARD_ADMIN_PASSWORD=correct horse battery staple 42"
    python = "/opt/dockyard/bin/python"
    ran = docker("run", "--rm", "--network", "none", "--env", password, "--entrypoint", python,
                 DOCKYARD_IMAGE, "-c", SERVE_UNTIL_THE_FORK)  # fmt: skip
    facts = json.loads(ran.stdout.strip().splitlines()[-1])
    assert facts["uid"] == 10000
    assert facts["no_bytecode"] == []
    # But PyJWT's pattern joined from a set, whose order may change from one start to the next.
    assert [text for text in facts["new"] if "(BEGIN|END)" not in text] == []


def test_first_start_shows_the_admin_password_once_and_docker_pushes_and_pulls(
    docker: DockerClient, registry: tuple[Container, str], tmp_path: Path
) -> None:
    container, url = registry
    container.wait_healthy()  # the image's HEALTHCHECK, on the address of the defaults
    password = admin_password(container)
    host = url.removeprefix("http://")
    assert "Login Succeeded" in docker.login(host, "admin", password).stdout
    ref = f"{host}/team/app:v1"
    image_id = load_image(docker, tmp_path, ref, seed=1)
    docker("push", ref)
    assert pull_id(docker, ref) == image_id


def slow_chunk(data: bytes, half_sent: threading.Event) -> Iterator[bytes]:
    """A PATCH body that takes a few seconds and says when half of it is out."""
    piece = 256 * 1024
    for start in range(0, len(data), piece):
        if start >= len(data) // 2:
            half_sent.set()
            time.sleep(0.15)
        yield data[start : start + piece]


def test_docker_stop_drains_an_upload_in_flight_and_a_restart_keeps_everything(
    docker: DockerClient, registry: tuple[Container, str], tmp_path: Path
) -> None:
    container, url = registry
    password = admin_password(container)
    host = url.removeprefix("http://")
    docker.login(host, "admin", password)
    ref = f"{host}/team/before-stop:v1"
    image_id = load_image(docker, tmp_path, ref, seed=2)
    docker("push", ref)

    data = os.urandom(6 * MiB + 5)
    with bearer_client(url, ("admin", password), ("team/drained",)) as http:
        location = OCIClient(http).upload_location("team/drained")
        half_sent = threading.Event()
        answers: list[httpx.Response] = []
        headers = {"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(data) - 1}"}
        url_of_upload = http.base_url.join(location)
        patch = threading.Thread(
            target=lambda: answers.append(
                http.patch(url_of_upload, content=slow_chunk(data, half_sent), headers=headers)
            )
        )
        patch.start()
        assert half_sent.wait(30)
        docker("stop", NAME, timeout=120)
        patch.join(60)
        assert answers and answers[0].status_code == 202, answers and describe(answers[0])
        location = answers[0].headers["Location"]
    state = container.inspect()["State"]
    assert state["ExitCode"] == 0, container.logs()[-4000:]  # drained and exited, not killed (137)
    assert "SIGTERM: draining" in container.logs()

    docker("start", NAME)
    container.wait_ready(url)
    assert admin_password(container) == password  # not created (or shown) again
    with bearer_client(url, ("admin", password), ("team/drained",)) as http:
        finished = OCIClient(http).finish_upload(location, digest_of(data))
        assert finished.status_code == 201, describe(finished)
        assert http.get(f"/v2/team/drained/blobs/{digest_of(data)}").content == data
    assert pull_id(docker, ref) == image_id


Acknowledged = list[tuple[str, str, bytes]]  # (repository, tag, manifest) the registry answered 201 for


def push_until_stopped(
    url: str, password: str, worker: int, stop: threading.Event, acknowledged: Acknowledged
) -> None:
    """Push small images until the registry goes away; record each one it answered 201 for."""
    repo = f"team/kill{worker}"
    try:
        with bearer_client(url, ("admin", password), (repo,), timeout=10) as http:
            oci = OCIClient(http)
            number = 0
            while not stop.is_set():
                number += 1
                pushed = oci.push_image(repo, f"v{number}", seed=f"{worker}-{number}-{os.urandom(4).hex()}")
                acknowledged.append((repo, f"v{number}", pushed.body))
    except (httpx.HTTPError, AssertionError):
        return  # the registry was killed mid-push: whatever was not acknowledged may be lost


def test_docker_kill_under_pushes_loses_nothing_acknowledged(registry: tuple[Container, str]) -> None:
    container, url = registry
    docker = container.docker
    password = admin_password(container)
    stop = threading.Event()
    acknowledged: Acknowledged = []
    pushers = [threading.Thread(target=push_until_stopped, args=(url, password, worker, stop, acknowledged))
               for worker in range(3)]  # fmt: skip
    for thread in pushers:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    docker("kill", NAME)
    stop.set()
    for thread in pushers:
        thread.join(60)
    assert container.wait_exited() == 137
    assert len(acknowledged) >= 12

    docker("start", NAME)
    container.wait_ready(url)
    repos = tuple(sorted({repo for repo, _, _ in acknowledged}))
    with bearer_client(url, ("admin", password), repos) as http:
        for repo, tag, body in acknowledged:
            got = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": json.loads(body)["mediaType"]})
            assert got.status_code == 200 and got.content == body, (repo, tag, describe(got))
            for blob in [json.loads(body)["config"], *json.loads(body)["layers"]]:
                content = http.get(f"/v2/{repo}/blobs/{blob['digest']}").content
                assert digest_of(content) == blob["digest"], (repo, tag, blob)


def test_backup_while_it_serves_restore_and_the_upgrade_routine(
    registry: tuple[Container, str], tmp_path: Path
) -> None:
    container, url = registry
    docker = container.docker
    password = admin_password(container)
    host = url.removeprefix("http://")
    docker.login(host, "admin", password)
    ref = f"{host}/team/upgraded:v1"
    image_id = load_image(docker, tmp_path, ref, seed=3)
    docker("push", ref)

    # docs/container.md, "Back up": online, from a second container on the same volume.
    backups = tmp_path / "backups"
    backups.mkdir()
    os.chown(backups, 10000, 10000)
    docker("run", "--rm", "--network", "host", "--volumes-from", NAME, "--volume", f"{backups}:/backup",
           DOCKYARD_IMAGE, "backup", "/backup/dockyard")  # fmt: skip
    manifest = json.loads((backups / "dockyard" / "manifest.json").read_text())
    assert manifest["problems"] == [], manifest
    # ... and restores into a new volume, where every manifest finds its blobs. In a thread, beside the
    # upgrade below (~10 s each): the two share only the backup, which this container reads.
    restored = ("--volume", "restored:/var/lib/dockyard", "--volume", f"{backups}:/backup:ro")
    script = "dockyard restore /backup/dockyard && dockyard verify --deep"  # one container for both
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        verifying = pool.submit(
            docker, "run", "--rm", "--network", "none", *restored, DOCKYARD_IMAGE, "sh", "-c", script
        )

        # docs/container.md, "Upgrade": stop and remove the container, migrate with the new image, start it.
        docker("stop", NAME, timeout=120)
        docker("rm", NAME)
        migrated = docker(
            "run", "--rm", "--volume", f"{VOLUME}:/var/lib/dockyard", DOCKYARD_IMAGE, "db", "upgrade"
        )
        assert re.search(r"^database at revision \S+", migrated.stdout, re.MULTILINE), migrated.stdout
        port = int(url.rsplit(":", 1)[1])
        upgraded = run_registry(docker, NAME, port, "--volume", f"{VOLUME}:/var/lib/dockyard")
        assert upgraded.admin_passwords_shown() == []  # a new container on the old volume: no new admin
        assert pull_id(docker, ref) == image_id
        verified = verifying.result()
    assert re.search(r"verified [1-9]\d* manifests", verified.stdout + verified.stderr), verified


def test_a_registry2_config_file_where_registry2_reads_it_and_registry_variables(
    docker: DockerClient, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        "storage:\n  filesystem:\n    rootdirectory: /var/lib/dockyard/registry\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    name = "registry2-config"
    docker("run", "--detach", "--name", name, "--network", "host", "--health-interval", "5s",
           "--volume", f"{config}:/etc/docker/registry/config.yml:ro",
           "--env", "REGISTRY_STORAGE_DELETE_ENABLED=true", DOCKYARD_IMAGE)  # fmt: skip
    container = Container(docker, name)
    try:
        container.wait_healthy()  # the health check found the port in the file
        checked = docker("exec", name, "dockyard", "config", "check")  # what `docker exec` sees: the same
        assert "registry:2 format" in checked.stdout, checked.stdout
        assert f"127.0.0.1:{port}" in checked.stdout, checked.stdout
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HTTP_TIMEOUT) as http:
            oci = OCIClient(http)  # open, as registry:2 is without an auth section
            pushed = oci.push_image("library/app", "v1")
            deleted = http.delete(f"/v2/library/app/manifests/{pushed.digest}")
            assert deleted.status_code == 202, describe(deleted)  # the variable beat the file's default
        assert container.admin_passwords_shown() == []
    finally:
        docker("rm", "--force", name, check=False)
