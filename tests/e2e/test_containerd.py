"""containerd (`ctr`, the client library behind Kubernetes and docker) against a real dockyard.

Each test starts its own throwaway containerd daemon (own root, state and socket; see
tests/support/containerd.py). Images are built locally (tests/support/oci.py) and reach dockyard through
skopeo or through `ctr images import` + `ctr images push`; what containerd pulls is compared bit for bit
with what was pushed, down to the files of the unpacked image.
"""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e import auth_fixtures
from tests.e2e.auth_fixtures import AuthRegistry
from tests.support.containerd import RunningContainerd, start_containerd
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, OciLayout, write_oci_layout
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

auth_registry = auth_fixtures.auth_registry
project = auth_fixtures.project

PLAIN_HTTP = "--plain-http"
STRESS_PUSHES = 25
ACCEPT_ANY_MANIFEST = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[RunningContainerd]:
    daemon = start_containerd(tmp_path / "containerd")
    yield daemon
    daemon.stop()


def image_digests(daemon: RunningContainerd) -> dict[str, str]:
    """`ctr images ls`: image name -> the digest its name points at."""
    lines = daemon.ctr_text("images", "ls").splitlines()
    assert lines[0].split()[:3] == ["REF", "TYPE", "DIGEST"], lines[0]
    return {fields[0]: fields[2] for fields in (line.split() for line in lines[1:])}


def content_of(daemon: RunningContainerd, digest: str) -> bytes | None:
    """The bytes containerd's content store holds for `digest` (`ctr content get`), None if it has none."""
    result = daemon.ctr("content", "get", digest, check=False)
    if result.returncode == 0:
        return result.stdout
    assert b"not found" in result.stderr, result.stderr  # absent, not some other failure
    return None


def mounted_files(daemon: RunningContainerd, image: str, target: Path, platform: str) -> dict[str, bytes]:
    """The regular files of the unpacked image, read through `ctr images mount` (then unmounted)."""
    target.mkdir()
    daemon.ctr("images", "mount", "--platform", platform, image, str(target))
    try:
        return {
            str(path.relative_to(target)): path.read_bytes() for path in target.rglob("*") if path.is_file()
        }
    finally:
        daemon.ctr("images", "unmount", str(target))


def layout_tar(layout: OciLayout, tar_path: Path) -> Path:
    """The OCI layout as the tar `ctr images import` reads."""
    with tarfile.open(tar_path, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout.path / name, arcname=name)
    return tar_path


def skopeo_push(tools: ContainerTools, layout: OciLayout, target: str) -> None:
    tools.skopeo(
        "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", layout.transport_ref, target
    )


def test_pull_gets_the_pushed_image_bit_for_bit_and_unpacks_it(
    server: RunningServer,
    containerd: RunningContainerd,
    tools: ContainerTools,
    repo_name: str,
    tmp_path: Path,
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=3, layer_size=96 * 1024, seed=61)
    image = layout.images[0]
    ref = f"{server.host}/{repo_name}:v1"
    skopeo_push(tools, layout, f"docker://{ref}")

    containerd.ctr("images", "pull", PLAIN_HTTP, ref)

    assert image_digests(containerd)[ref] == layout.top.digest
    for digest in [layout.top.digest, *image.blob_digests]:
        assert content_of(containerd, digest) == layout.blobs[digest], digest
    expected_files = {name: data for layer in image.layers for name, data in layer.files.items()}
    assert mounted_files(containerd, ref, tmp_path / "rootfs", "linux/amd64") == expected_files


def test_pull_of_a_missing_tag_fails_as_not_found(
    server: RunningServer, containerd: RunningContainerd, repo_name: str
) -> None:
    ref = f"{server.host}/{repo_name}:absent"

    failed = containerd.ctr("images", "pull", PLAIN_HTTP, ref, check=False)

    assert failed.returncode != 0
    assert f"{ref}: not found" in failed.stderr.decode()
    assert ref not in image_digests(containerd)


def test_push_of_an_imported_image_is_served_as_built(
    server: RunningServer, containerd: RunningContainerd, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=64 * 1024, seed=62)
    ref = f"{server.host}/{repo_name}:latest"  # the layout's tag, named under the registry by --base-name
    containerd.ctr(
        "images",
        "import",
        "--base-name",
        f"{server.host}/{repo_name}",
        str(layout_tar(layout, tmp_path / "image.tar")),
    )
    assert image_digests(containerd)[ref] == layout.top.digest

    containerd.push(PLAIN_HTTP, ref)

    manifest = httpx.get(
        f"{server.url}/v2/{repo_name}/manifests/latest", headers=ACCEPT_ANY_MANIFEST, timeout=HTTP_TIMEOUT
    )
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == layout.top.digest
    assert manifest.content == layout.blobs[layout.top.digest]
    for digest in layout.images[0].blob_digests:
        blob = httpx.get(
            f"{server.url}/v2/{repo_name}/blobs/{digest}", follow_redirects=True, timeout=HTTP_TIMEOUT
        )
        assert blob.status_code == 200, digest
        assert blob.content == layout.blobs[digest], digest


def test_many_pushes_of_multi_layer_images_over_two_workers_all_land_as_built(
    make_server: Callable[..., RunningServer], containerd: RunningContainerd, tmp_path: Path
) -> None:
    """containerd pushes a 3-layer image's blobs in parallel (HEAD, POST, PUT with the body from a pipe,
    each on a keep-alive connection) to a server with two workers: every one of many pushes lands.
    (Issue 16: one PUT in ~17 pushes 'answered 400' was ctr itself giving up, see CLIENT_READ_FLAKE.)"""
    server = make_server({"http": {"workers": 2}})
    pushed: dict[str, OciLayout] = {}
    for index in range(STRESS_PUSHES):
        layout = write_oci_layout(tmp_path / f"src{index}", layers=3, layer_size=64 * 1024, seed=700 + index)
        base = f"{server.host}/stress/app{index}"
        containerd.ctr(
            "images", "import", "--base-name", base, str(layout_tar(layout, tmp_path / f"{index}.tar"))
        )
        containerd.push(PLAIN_HTTP, f"{base}:latest")
        pushed[f"stress/app{index}"] = layout

    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        for repository, layout in pushed.items():
            manifest = http.get(f"/v2/{repository}/manifests/latest", headers=ACCEPT_ANY_MANIFEST)
            assert manifest.headers.get("Docker-Content-Digest") == layout.top.digest, repository
            for digest in layout.images[0].blob_digests:
                assert http.get(f"/v2/{repository}/blobs/{digest}").content == layout.blobs[digest], digest
    assert " status=5" not in server.log()
    assert containerd.client_read_flakes < STRESS_PUSHES // 5  # a few at most: ~1.5 % of pushes


def test_push_of_a_pulled_image_to_a_new_repository_keeps_its_digest(
    server: RunningServer,
    containerd: RunningContainerd,
    tools: ContainerTools,
    repo_name: str,
    tmp_path: Path,
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=64 * 1024, seed=63)
    source = f"{server.host}/{repo_name}:v1"
    target_repo = f"{repo_name}-copy"
    target = f"{server.host}/{target_repo}:v2"
    skopeo_push(tools, layout, f"docker://{source}")
    containerd.ctr("images", "pull", PLAIN_HTTP, source)
    containerd.ctr("images", "tag", source, target)

    # containerd remembers where the blobs came from and asks to mount them from the source repository.
    containerd.push(PLAIN_HTTP, target)

    inspected = tools.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}").stdout
    assert inspected.encode() == layout.blobs[layout.top.digest]
    head = httpx.head(
        f"{server.url}/v2/{target_repo}/manifests/v2", headers=ACCEPT_ANY_MANIFEST, timeout=HTTP_TIMEOUT
    )
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == layout.top.digest
    for digest in layout.images[0].blob_digests:
        blob = httpx.get(
            f"{server.url}/v2/{target_repo}/blobs/{digest}", follow_redirects=True, timeout=HTTP_TIMEOUT
        )
        assert blob.content == layout.blobs[digest], digest


def test_pull_with_a_platform_takes_that_child_of_a_multi_arch_index(
    server: RunningServer,
    containerd: RunningContainerd,
    tools: ContainerTools,
    repo_name: str,
    tmp_path: Path,
) -> None:
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    layout = write_oci_layout(tmp_path / "src", layers=1, layer_size=32 * 1024, platforms=platforms, seed=64)
    amd64, arm64 = layout.images
    ref = f"{server.host}/{repo_name}:multi"
    skopeo_push(tools, layout, f"docker://{ref}")

    containerd.ctr("images", "pull", PLAIN_HTTP, "--platform", "linux/arm64", ref)

    assert image_digests(containerd)[ref] == layout.top.digest
    assert content_of(containerd, layout.top.digest) == layout.blobs[layout.top.digest]
    for digest in [arm64.manifest.digest, *arm64.blob_digests]:
        assert content_of(containerd, digest) == layout.blobs[digest], digest
    for digest in [amd64.manifest.digest, *amd64.blob_digests]:
        assert content_of(containerd, digest) is None, f"the amd64 child's {digest} was fetched too"
    files = mounted_files(containerd, ref, tmp_path / "rootfs", "linux/arm64")
    assert files["layer0/hello.txt"] == b"layer 0 for linux/arm64\n"


def test_push_of_an_imported_multi_arch_index_keeps_every_digest(
    server: RunningServer, containerd: RunningContainerd, repo_name: str, tmp_path: Path
) -> None:
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    layout = write_oci_layout(tmp_path / "src", layers=1, layer_size=32 * 1024, platforms=platforms, seed=65)
    ref = f"{server.host}/{repo_name}:latest"
    tar_path = layout_tar(layout, tmp_path / "image.tar")
    containerd.ctr(
        "images", "import", "--all-platforms", "--base-name", f"{server.host}/{repo_name}", str(tar_path)
    )

    containerd.push(PLAIN_HTTP, ref)

    index = httpx.get(
        f"{server.url}/v2/{repo_name}/manifests/latest", headers=ACCEPT_ANY_MANIFEST, timeout=HTTP_TIMEOUT
    )
    assert index.status_code == 200
    assert index.headers["Content-Type"] == OCI_INDEX
    assert index.content == layout.blobs[layout.top.digest]
    for image in layout.images:
        child = httpx.get(
            f"{server.url}/v2/{repo_name}/manifests/{image.manifest.digest}",
            headers=ACCEPT_ANY_MANIFEST,
            timeout=HTTP_TIMEOUT,
        )
        assert child.content == layout.blobs[image.manifest.digest], image.platform


# --- token auth (HTTPS, private project) ----------------------------------------------------------------
def https_trust(registry: AuthRegistry, tmp_path: Path) -> list[str]:
    """ctr flags to reach the registry over HTTPS trusting only its CA.

    containerd talks plain HTTP to a loopback registry unless a hosts.toml names the https:// endpoint, so
    `--tlscacert` alone is not enough here.
    """
    hosts_dir = tmp_path / "certs.d"
    (hosts_dir / registry.host).mkdir(parents=True)
    endpoint = f"https://{registry.host}"
    (hosts_dir / registry.host / "hosts.toml").write_text(
        f'server = "{endpoint}"\n\n[host."{endpoint}"]\n  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{registry.ca_file}"\n'
    )
    return ["--hosts-dir", str(hosts_dir)]


def test_pull_from_a_private_project_needs_credentials(
    auth_registry: AuthRegistry,
    project: str,
    containerd: RunningContainerd,
    tools: ContainerTools,
    tmp_path: Path,
) -> None:
    registry, developer = auth_registry, auth_registry.developer
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=32 * 1024, seed=66)
    ref = f"{registry.host}/{project}/app:v1"
    tools.skopeo(
        "copy",
        "--dest-cert-dir",
        str(registry.ca_dir),
        "--dest-creds",
        developer.joined,
        layout.transport_ref,
        f"docker://{ref}",
    )
    trust = https_trust(registry, tmp_path)

    anonymous = containerd.ctr("images", "pull", *trust, ref, check=False)
    assert anonymous.returncode != 0
    assert "pull access denied" in anonymous.stderr.decode(), anonymous.stderr
    assert ref not in image_digests(containerd)

    wrong = containerd.ctr(
        "images", "pull", *trust, "--user", f"{developer.username}:not-it", ref, check=False
    )
    assert wrong.returncode != 0
    assert "401 unauthorized" in wrong.stderr.decode().lower(), wrong.stderr

    containerd.ctr("images", "pull", *trust, "--user", registry.guest.joined, ref)
    assert image_digests(containerd)[ref] == layout.top.digest
    for digest in layout.images[0].blob_digests:
        assert content_of(containerd, digest) == layout.blobs[digest], digest


def test_push_to_a_private_project_as_developer_but_not_as_guest(
    auth_registry: AuthRegistry, project: str, containerd: RunningContainerd, tmp_path: Path
) -> None:
    registry = auth_registry
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=32 * 1024, seed=67)
    base = f"{registry.host}/{project}/app"
    containerd.ctr("images", "import", "--base-name", base, str(layout_tar(layout, tmp_path / "image.tar")))
    ref = f"{base}:latest"
    trust = https_trust(registry, tmp_path)

    refused = containerd.refused_push(*trust, "--user", registry.guest.joined, ref)
    assert "insufficient_scope" in refused.stderr.decode(), refused.stderr
    assert registry.admin.tags(f"{project}/app") is None

    containerd.push(*trust, "--user", registry.developer.joined, ref)
    assert registry.admin.tags(f"{project}/app") == ["latest"]
    assert registry.admin.manifest_digest(f"{project}/app", "latest") == layout.top.digest


def test_push_of_an_image_pulled_from_a_project_the_pusher_cannot_read_uploads_its_blobs(
    auth_registry: AuthRegistry, project: str, containerd: RunningContainerd, tmp_path: Path
) -> None:
    """containerd labels pulled blobs with their source repository and asks to mount them from it on push;
    the developer may not read that project, so dockyard starts plain uploads instead (a 401 there would
    abort containerd 1.6's push), and the source stays unreadable to them."""
    registry, developer = auth_registry, auth_registry.developer
    admin = auth_fixtures.Credentials("admin", auth_fixtures.ADMIN_PASSWORD)
    other_project = project[:50].rstrip("-") + "-src"
    registry.admin.create_project(other_project)
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=32 * 1024, seed=68)
    source = f"{registry.host}/{other_project}/base:v1"
    target = f"{registry.host}/{project}/app:v1"
    trust = https_trust(registry, tmp_path)
    containerd.ctr(
        "images",
        "import",
        "--base-name",
        f"{registry.host}/{other_project}/base",
        str(layout_tar(layout, tmp_path / "image.tar")),
    )
    containerd.ctr("images", "tag", f"{registry.host}/{other_project}/base:latest", source)
    containerd.push(*trust, "--user", admin.joined, source)
    containerd.ctr("images", "rm", source, f"{registry.host}/{other_project}/base:latest")
    containerd.ctr("images", "pull", *trust, "--user", admin.joined, source)
    containerd.ctr("images", "tag", source, target)

    containerd.push(*trust, "--user", developer.joined, target)

    developer_api = registry.api_as(developer)
    try:
        assert developer_api.manifest_digest(f"{project}/app", "v1") == layout.top.digest
        for digest in layout.images[0].blob_digests:
            blob = developer_api.registry.get(f"/v2/{project}/app/blobs/{digest}", follow_redirects=True)
            assert blob.content == layout.blobs[digest], digest
        refused = developer_api.registry.get(f"/v2/{other_project}/base/manifests/v1")
        assert refused.status_code == 403  # Basic credentials that are right, without the right: DENIED
        assert refused.json()["errors"][0]["code"] == "DENIED"
    finally:
        developer_api.close()


def test_a_push_into_a_full_project_is_refused_with_its_status_and_does_not_hang(
    auth_registry: AuthRegistry, project: str, containerd: RunningContainerd, tmp_path: Path
) -> None:
    """A blob PUT that would pass the project's quota is refused from its Content-Length, and dockyard reads
    the body it will not keep before it answers: containerd 1.6, answered before it wrote its first byte
    into the request's body pipe, then waited on that pipe for ever (3 of 3 such pushes hung)."""
    registry, developer = auth_registry, auth_registry.developer.joined
    trust = https_trust(registry, tmp_path)
    small = write_oci_layout(tmp_path / "small", layers=1, layer_size=32 * 1024, seed=69)
    base = f"{registry.host}/{project}/app"
    containerd.ctr("images", "import", "--base-name", base, str(layout_tar(small, tmp_path / "small.tar")))
    containerd.push(*trust, "--user", developer, f"{base}:latest")
    used = registry.admin.call("GET", f"/projects/{project}/quota", 200)["used_bytes"]
    registry.admin.call(
        "PUT", f"/projects/{project}/quota", 200, json={"limit_bytes": used, "warn_percent": 80}
    )
    big = write_oci_layout(tmp_path / "big", layers=2, layer_size=16 * 1024 * 1024, seed=70)
    containerd.ctr(
        "images", "import", "--base-name", f"{base}-big", str(layout_tar(big, tmp_path / "big.tar"))
    )

    try:
        refused = containerd.refused_push(*trust, "--user", developer, f"{base}-big:latest", timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("ctr's push into a full project was still running after 90 s")

    assert refused.returncode != 0
    assert "403 Forbidden" in refused.stderr.decode(), refused.stderr
    assert registry.admin.tags(f"{project}/app-big") is None
