"""Replication's artifact filters with real peers on loopback: a real `dockyard serve` pushing into
Debian's docker-registry. One repository holds an image, a Helm chart, an SBOM and a cosign signature
under tags; a policy with an artifact-type filter copies only the types it names. Images with
different config labels; a policy with a label filter copies only those whose labels match. What is
copied reads back bit for bit, what is not is absent; the CLI sets and shows the filters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_cli import Cli
from tests.integration.test_replication import (
    ADMIN,
    CONFIG,
    USER,
    Image,
    _digest,
    assert_same,
    local_http,
    run_policy,
)
from tests.support.ociclient import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OCIClient, descriptor, image_manifest
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
SPDX = "application/spdx+json"
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("filters-remote"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("filters-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer, remote: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        answer = client.post("/endpoints", json={"name": "dr", "url": remote, "credentials": credentials})
        assert answer.status_code == 201, answer.text
        assert client.post("/projects", json={"name": "team"}).status_code == 201
        yield client


@pytest.fixture
def remote_http(remote: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=remote, auth=USER, timeout=HTTP_TIMEOUT) as http:
        yield http


def push_artifact(
    client: OCIClient,
    repository: str,
    tag: str,
    config: bytes,
    config_type: str,
    layer: bytes,
    layer_type: str = OCI_LAYER,
    artifact_type: str | None = None,
) -> Image:
    for data in (config, layer):
        client.push_blob(repository, data)
    manifest = image_manifest(
        descriptor(config_type, config), [descriptor(layer_type, layer)], artifact_type=artifact_type
    )
    pushed = client.push_manifest(repository, tag, manifest, OCI_MANIFEST)
    return Image(manifest, pushed.digest, OCI_MANIFEST, {_digest(config): config, _digest(layer): layer})


def labelled_image(client: OCIClient, repository: str, tag: str, labels: dict[str, str]) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels}}).encode()
    return push_artifact(client, repository, tag, config, OCI_CONFIG, f"layer of {tag}".encode() * 100)


def _absent(http: httpx.Client, repository: str, tag: str) -> bool:
    return http.head(f"/v2/{repository}/manifests/{tag}").status_code == 404


def test_an_artifact_type_filter_copies_only_those_types(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client
) -> None:
    repository = "team/kinds"
    with local_http(server, repository) as http:
        client = OCIClient(http)
        image = labelled_image(client, repository, "image", {"tier": "prod"})
        chart = push_artifact(client, repository, "chart", b'{"name":"web","version":"1.0.0"}', HELM_CONFIG,
                              b"chart tarball" * 50, HELM_LAYER)  # fmt: skip
        sbom = push_artifact(client, repository, "sbom", b"{}", EMPTY, b'{"spdxVersion":"SPDX-2.3"}', SPDX,
                             artifact_type=SPDX)  # fmt: skip
        push_artifact(client, repository, "sig", b"{}", EMPTY, b'{"critical":{}}',
                      "application/vnd.dev.cosign.simplesigning.v1+json", artifact_type=COSIGN)  # fmt: skip
    answer = api.post(
        "/replication/policies",
        json={"name": "kinds", "endpoint": "dr", "direction": "push", "repositories": repository,
              "artifact_types": ["chart", "application/spdx*"]},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert answer.json()["artifact_types"] == ["chart", "application/spdx*"]
    run = run_policy(api, "kinds")
    assert run["status"] == "succeeded", json.dumps(run, indent=1)
    assert sorted(a["source"] for a in run["artifacts"]) == [f"{repository}:chart", f"{repository}:sbom"]
    assert_same(remote_http, repository, "chart", chart)
    assert_same(remote_http, repository, "sbom", sbom)
    assert _absent(remote_http, repository, "image") and _absent(remote_http, repository, "sig")

    # Widened to images too: the image follows, the chart and the SBOM are not copied again.
    changed = api.patch("/replication/policies/kinds", json={"artifact_types": ["image", "chart", "sbom"]})
    assert changed.status_code == 200, changed.text
    again = run_policy(api, "kinds")
    assert again["counters"]["artifacts_copied"] == 1 and again["counters"]["artifacts_skipped"] == 2
    assert_same(remote_http, repository, "image", image)
    assert _absent(remote_http, repository, "sig")
    refused = api.patch("/replication/policies/kinds", json={"artifact_types": ["helm"]})
    assert refused.status_code == 400 and "one of image, signature" in refused.text


def test_a_label_filter_copies_only_images_whose_labels_match(
    server: RunningServer, api: httpx.Client, remote_http: httpx.Client, tmp_path: Path
) -> None:
    repository = "team/labelled"
    with local_http(server, repository) as http:
        client = OCIClient(http)
        prod = labelled_image(client, repository, "prod", {"tier": "prod", "team": "payments"})
        labelled_image(client, repository, "dev", {"tier": "dev", "team": "payments"})
        labelled_image(client, repository, "other", {"tier": "prod", "team": "web"})
        labelled_image(client, repository, "none", {})
    admin = Cli(tmp_path / "home")
    admin.home.mkdir()
    admin.login(server.url, "admin", ADMIN[1])
    created = admin.json(
        "replication", "policy", "create", "labelled", "-d", "push", "-e", "dr", "-r", repository,
        "--label", "tier=prod", "--label", "team=pay*",
    )  # fmt: skip
    assert created["labels"] == ["tier=prod", "team=pay*"] and created["artifact_types"] == []
    assert "tier=prod, team=pay*" in admin.ok("replication", "policy", "show", "labelled")
    shown = admin.ok("replication", "run", "labelled", "--wait")
    assert f"{repository}:prod" in shown
    assert_same(remote_http, repository, "prod", prod)
    for tag in ("dev", "other", "none"):
        assert _absent(remote_http, repository, tag), tag
    cleared = admin.json("replication", "policy", "update", "labelled", "--label", "")
    assert cleared["labels"] == []
