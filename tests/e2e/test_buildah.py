"""buildah builds an image from scratch, pushes it to dockyard, and the file is in the layer pulled back."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.oci import read_layer_files, read_oci_layout, sha256_digest, uncompressed
from tests.support.server import RunningServer
from tests.support.tools import ContainerTools


def test_build_from_scratch_push_and_find_the_file_in_the_layer(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    content = f"built by buildah for {repo_name}\n".encode()
    (tmp_path / "hello.txt").write_bytes(content)

    container = tools.buildah("from", "scratch").stdout.strip()
    tools.buildah("copy", container, str(tmp_path / "hello.txt"), "/greeting/hello.txt")
    tools.buildah("config", "--label", "org.example.test=buildah", container)
    tools.buildah("commit", "--quiet", "--format", "oci", container, "localhost/built:1.0")
    tools.buildah(
        "push",
        "--quiet",
        "--tls-verify=false",
        "localhost/built:1.0",
        f"docker://{server.host}/{repo_name}:1.0",
    )

    out = tmp_path / "out"
    remote = f"docker://{server.host}/{repo_name}:1.0"
    tools.skopeo("copy", "--src-tls-verify=false", remote, f"oci:{out}:1.0")
    top, blobs = read_oci_layout(out, "1.0")
    manifest = json.loads(blobs[top.digest])
    config = json.loads(blobs[manifest["config"]["digest"]])
    layers = [blobs[layer["digest"]] for layer in manifest["layers"]]

    assert len(layers) == 1
    assert read_layer_files(layers[0]) == {"greeting/hello.txt": content}
    assert config["config"]["Labels"]["org.example.test"] == "buildah"
    # The config names the uncompressed layer: the registry served the very bytes buildah pushed.
    assert config["rootfs"]["diff_ids"] == [sha256_digest(uncompressed(layers[0]))]
