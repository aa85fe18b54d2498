"""podman (rootful, vfs, no daemon) pushes an image to dockyard and pulls it back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.oci import OCI_MANIFEST, write_oci_layout
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools


def image_ids(tools: ContainerTools) -> set[str]:
    return set(tools.podman("images", "--quiet", "--no-trunc").stdout.split())


def test_push_then_pull_back_gives_the_same_image(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=64 * 1024, seed=11)
    image = layout.images[0]
    remote = f"{server.host}/{repo_name}:1.0"

    # The image ID podman gives an image is its config digest.
    tools.podman("pull", "--quiet", layout.transport_ref)
    assert image_ids(tools) == {image.config.digest}

    digest_file = tmp_path / "pushed.digest"
    tools.podman(
        "push",
        "--quiet",
        "--tls-verify=false",
        "--digestfile",
        str(digest_file),
        image.config.digest,
        f"docker://{remote}",
    )
    pushed_digest = digest_file.read_text().strip()
    head = httpx.head(
        f"{server.url}/v2/{repo_name}/manifests/1.0", headers={"Accept": OCI_MANIFEST}, timeout=HTTP_TIMEOUT
    )
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == pushed_digest

    tools.podman("rmi", "--force", image.config.digest)
    assert image_ids(tools) == set()

    tools.podman("pull", "--quiet", "--tls-verify=false", remote)
    assert image_ids(tools) == {image.config.digest}
    [inspected] = json.loads(tools.podman("image", "inspect", remote).stdout)
    assert inspected["Digest"] == pushed_digest
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "amd64")
