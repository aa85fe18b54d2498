"""oras (oras-py) pushes artifacts to dockyard; a referrer's `subject` shows up in the referrers API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import oras.client
import requests

from tests.support.oci import OCI_INDEX, OCI_MANIFEST, sha256_digest
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"
SBOM_TYPE = "application/vnd.example.sbom.v1+json"
ARTIFACT_TYPE = "application/vnd.example.report.config.v1+json"


def oras_client() -> oras.client.OrasClient:
    return oras.client.OrasClient(insecure=True)  # plain HTTP to the loopback server


def pushed_manifest(response: requests.Response) -> dict[str, Any]:
    """The descriptor of a manifest oras-py just pushed: the digest of the exact bytes it sent."""
    assert response.status_code == 201, response.text
    body = response.request.body
    assert isinstance(body, bytes)
    digest = sha256_digest(body)
    assert response.headers["Docker-Content-Digest"] == digest
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)}


def push_referrer(
    client: oras.client.OrasClient, target: str, subject: dict[str, Any], artifact_type: str, payload: Path
) -> dict[str, Any]:
    """Push an artifact manifest (empty config, one blob) whose `subject` is another manifest."""
    container = client.get_container(target)
    empty = payload.parent / "empty.json"
    empty.write_bytes(b"{}")
    config = {"mediaType": EMPTY_CONFIG, "digest": sha256_digest(b"{}"), "size": 2}
    layer = {
        "mediaType": "application/octet-stream",
        "digest": sha256_digest(payload.read_bytes()),
        "size": payload.stat().st_size,
        "annotations": {"org.opencontainers.image.title": payload.name},
    }
    for blob_path, descriptor in ((empty, config), (payload, layer)):
        # oras-py answers 200 itself for a blob the registry has (its HEAD said so); else the answer is
        # the registry's to the closing PUT: 201.
        expected = 200 if client.blob_exists(descriptor, container) else 201
        response = client.upload_blob(str(blob_path), container, descriptor)
        assert response.status_code == expected, response.text
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
        "subject": subject,
        "annotations": {"org.example.kind": artifact_type},
    }
    return {**pushed_manifest(client.upload_manifest(manifest, container)), "artifactType": artifact_type}


def test_push_an_artifact_and_pull_it_back(server: RunningServer, repo_name: str, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("all green\n")
    client = oras_client()

    response = client.push(
        target=f"{server.host}/{repo_name}:v1",
        files=[f"{report}:text/plain"],
        manifest_config=f"{tmp_path / 'missing-config'}:{ARTIFACT_TYPE}",  # no file: oras sends `{}`
        disable_path_validation=True,
    )
    descriptor = pushed_manifest(response)
    pulled = client.pull(target=f"{server.host}/{repo_name}:v1", outdir=str(tmp_path / "out"))

    assert [Path(path).read_text() for path in pulled] == ["all green\n"]
    manifest = client.get_manifest(f"{server.host}/{repo_name}@{descriptor['digest']}")
    assert manifest["config"]["mediaType"] == ARTIFACT_TYPE
    assert manifest["layers"][0]["digest"] == "sha256:" + hashlib.sha256(b"all green\n").hexdigest()


def test_referrers_lists_artifacts_with_a_subject_and_filters_by_type(
    server: RunningServer, repo_name: str, tmp_path: Path
) -> None:
    image_file = tmp_path / "app.bin"
    image_file.write_bytes(b"the subject artifact\n")
    client = oras_client()
    subject = pushed_manifest(
        client.push(
            target=f"{server.host}/{repo_name}:1.0",
            files=[str(image_file)],
            disable_path_validation=True,
        )
    )
    (tmp_path / "sig").write_bytes(b"signature bytes")
    (tmp_path / "sbom.json").write_text(json.dumps({"packages": []}))
    target = f"{server.host}/{repo_name}"
    signature = push_referrer(client, f"{target}:sig", subject, SIGNATURE_TYPE, tmp_path / "sig")
    sbom = push_referrer(client, f"{target}:sbom", subject, SBOM_TYPE, tmp_path / "sbom.json")

    listing = httpx.get(f"{server.url}/v2/{repo_name}/referrers/{subject['digest']}", timeout=HTTP_TIMEOUT)
    assert listing.status_code == 200, listing.text
    assert listing.headers["Content-Type"].split(";")[0] == OCI_INDEX
    index = listing.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(by_digest) == {signature["digest"], sbom["digest"]}
    for expected in (signature, sbom):
        entry = by_digest[expected["digest"]]
        assert entry["mediaType"] == OCI_MANIFEST
        assert entry["size"] == expected["size"]
        assert entry["artifactType"] == expected["artifactType"]
        assert entry["annotations"] == {"org.example.kind": expected["artifactType"]}

    filtered = httpx.get(
        f"{server.url}/v2/{repo_name}/referrers/{subject['digest']}",
        params={"artifactType": SBOM_TYPE},
        timeout=HTTP_TIMEOUT,
    )
    assert filtered.status_code == 200, filtered.text
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [entry["digest"] for entry in filtered.json()["manifests"]] == [sbom["digest"]]

    # A manifest nobody refers to has an empty list, not a 404.
    lonely = httpx.get(f"{server.url}/v2/{repo_name}/referrers/{signature['digest']}", timeout=HTTP_TIMEOUT)
    assert lonely.status_code == 200, lonely.text
    assert lonely.json()["manifests"] == []
