"""skopeo against dockyard: copies in and out must be bit-for-bit, tags list, inspect, delete, HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.e2e.conftest import TlsRegistry
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, read_oci_layout, write_oci_layout
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

PLAIN_HTTP = "--dest-tls-verify=false"
PLAIN_HTTP_SRC = "--src-tls-verify=false"


def test_copy_in_and_out_keeps_manifest_and_blobs_bit_for_bit(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=3, layer_size=96 * 1024, seed=1)
    remote = f"docker://{server.host}/{repo_name}:1.0"

    tools.skopeo("copy", PLAIN_HTTP, layout.transport_ref, remote)
    tools.skopeo("copy", PLAIN_HTTP_SRC, remote, f"oci:{tmp_path / 'out'}:1.0")

    top, blobs = read_oci_layout(tmp_path / "out", "1.0")
    assert top == layout.top
    assert blobs == layout.blobs  # same digests, same bytes: manifest, config and every layer

    # What the registry itself serves for the tag is the very manifest that was pushed.
    response = httpx.get(
        f"{server.url}/v2/{repo_name}/manifests/1.0", headers={"Accept": OCI_MANIFEST}, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200
    assert response.content == layout.blobs[layout.top.digest]
    assert response.headers["Docker-Content-Digest"] == layout.top.digest
    assert response.headers["Content-Type"] == OCI_MANIFEST


def test_copy_multi_platform_index_with_all_preserves_every_digest(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    platforms = [("linux", "amd64"), ("linux", "arm64")]
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=32 * 1024, platforms=platforms, seed=2)
    remote = f"docker://{server.host}/{repo_name}:multi"

    tools.skopeo("copy", "--all", "--preserve-digests", PLAIN_HTTP, layout.transport_ref, remote)

    raw_index = tools.skopeo("inspect", "--raw", "--tls-verify=false", remote).stdout
    assert raw_index.encode() == layout.blobs[layout.top.digest]
    for image in layout.images:
        by_digest = f"docker://{server.host}/{repo_name}@{image.manifest.digest}"
        raw_manifest = tools.skopeo("inspect", "--raw", "--tls-verify=false", by_digest).stdout
        assert raw_manifest.encode() == layout.blobs[image.manifest.digest], image.platform

    out = f"oci:{tmp_path / 'out'}:multi"
    tools.skopeo("copy", "--all", "--preserve-digests", PLAIN_HTTP_SRC, remote, out)
    top, blobs = read_oci_layout(tmp_path / "out", "multi")
    assert top.digest == layout.top.digest
    assert top.media_type == OCI_INDEX
    assert blobs == layout.blobs


def test_list_tags_shows_every_pushed_tag(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=1, layer_size=8 * 1024, seed=3)
    tags = ["1.0", "1.1", "latest"]
    for tag in tags:
        tools.skopeo("copy", PLAIN_HTTP, layout.transport_ref, f"docker://{server.host}/{repo_name}:{tag}")

    listed = json.loads(
        tools.skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/{repo_name}").stdout
    )

    assert listed["Repository"] == f"{server.host}/{repo_name}"
    assert sorted(listed["Tags"]) == tags


def test_inspect_reports_the_pushed_image(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=8 * 1024, seed=4)
    image = layout.images[0]
    remote = f"docker://{server.host}/{repo_name}:1.0"
    tools.skopeo("copy", PLAIN_HTTP, layout.transport_ref, remote)

    inspected = json.loads(tools.skopeo("inspect", "--tls-verify=false", remote).stdout)
    raw = tools.skopeo("inspect", "--raw", "--tls-verify=false", remote).stdout
    config = tools.skopeo("inspect", "--config", "--raw", "--tls-verify=false", remote).stdout

    assert inspected["Digest"] == layout.top.digest
    assert inspected["Layers"] == [layer.descriptor.digest for layer in image.layers]
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "amd64")
    assert inspected["Created"] == "2023-11-14T22:13:20Z"
    assert raw.encode() == layout.blobs[layout.top.digest]
    assert config.encode() == layout.blobs[image.config.digest]


def test_delete_removes_the_image_and_only_it(
    server: RunningServer, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    doomed = write_oci_layout(tmp_path / "doomed", layers=1, layer_size=8 * 1024, seed=5)
    kept = write_oci_layout(tmp_path / "kept", layers=1, layer_size=8 * 1024, seed=6)
    tools.skopeo("copy", PLAIN_HTTP, doomed.transport_ref, f"docker://{server.host}/{repo_name}:1.0")
    tools.skopeo("copy", PLAIN_HTTP, kept.transport_ref, f"docker://{server.host}/{repo_name}:2.0")

    tools.skopeo("delete", "--tls-verify=false", f"docker://{server.host}/{repo_name}:1.0")

    accept = {"Accept": OCI_MANIFEST}
    for reference in ("1.0", doomed.top.digest):
        response = httpx.get(
            f"{server.url}/v2/{repo_name}/manifests/{reference}", headers=accept, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 404, reference
    failed = tools.skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/{repo_name}:1.0", check=False
    )
    assert failed.returncode != 0
    assert "manifest unknown" in failed.stderr.lower()
    kept_raw = tools.skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/{repo_name}:2.0"
    )
    assert kept_raw.stdout.encode() == kept.blobs[kept.top.digest]
    listed = json.loads(
        tools.skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/{repo_name}").stdout
    )
    assert listed["Tags"] == ["2.0"]


def test_copy_over_https_trusting_the_dockyard_ca(
    tls_registry: TlsRegistry, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=2, layer_size=16 * 1024, seed=7)
    remote = f"docker://{tls_registry.server.host}/{repo_name}:1.0"

    # TLS verification stays on (skopeo's default): the CA from `dockyard cert` is all it trusts.
    tools.skopeo("copy", "--dest-cert-dir", str(tls_registry.ca_dir), layout.transport_ref, remote)
    tools.skopeo("copy", "--src-cert-dir", str(tls_registry.ca_dir), remote, f"oci:{tmp_path / 'out'}:1.0")

    top, blobs = read_oci_layout(tmp_path / "out", "1.0")
    assert top == layout.top
    assert blobs == layout.blobs
    response = httpx.get(
        f"{tls_registry.server.url}/v2/{repo_name}/manifests/1.0",
        headers={"Accept": OCI_MANIFEST},
        verify=tls_registry.ssl_context(),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == layout.top.digest


def test_copy_over_https_with_the_wrong_ca_is_refused(
    tls_registry: TlsRegistry, tools: ContainerTools, repo_name: str, tmp_path: Path
) -> None:
    layout = write_oci_layout(tmp_path / "src", layers=1, layer_size=8 * 1024, seed=8)
    remote = f"docker://{tls_registry.server.host}/{repo_name}:1.0"

    wrong_trust = str(tls_registry.wrong_ca_dir)
    failed = tools.skopeo("copy", "--dest-cert-dir", wrong_trust, layout.transport_ref, remote, check=False)

    assert failed.returncode != 0
    assert "certificate signed by unknown authority" in failed.stderr
    response = httpx.get(
        f"{tls_registry.server.url}/v2/{repo_name}/manifests/1.0",
        headers={"Accept": OCI_MANIFEST},
        verify=tls_registry.ssl_context(),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 404
