"""Content management: deleting manifests, tags and blobs, and a registry with deletes disabled."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.support.ociclient import (
    OCI_INDEX,
    OCIClient,
    PushedManifest,
    assert_error,
    describe,
    digest_of,
    index_manifest,
)
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT


def test_delete_manifest_by_digest(oci: OCIClient, repo_name: str) -> None:
    pushed = oci.push_image(repo_name, "doomed")
    response = oci.http.delete(f"/v2/{repo_name}/manifests/{pushed.digest}")
    assert response.status_code == 202, describe(response)
    assert_error(oci.get_manifest(repo_name, pushed.digest), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(repo_name, pushed.digest, method="HEAD").status_code == 404
    assert_error(oci.get_manifest(repo_name, "doomed"), 404, "MANIFEST_UNKNOWN")  # its tag goes with it
    assert "doomed" not in (oci.tags(repo_name) or [])


def test_delete_tag_removes_only_that_tag(oci: OCIClient, repo_name: str) -> None:
    pushed = oci.push_image(repo_name, "keep")
    oci.push_manifest(repo_name, "drop", pushed.body, pushed.media_type)
    response = oci.http.delete(f"/v2/{repo_name}/manifests/drop")
    assert response.status_code == 202, describe(response)
    assert_error(oci.get_manifest(repo_name, "drop"), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(repo_name, "keep").content == pushed.body
    assert oci.get_manifest(repo_name, pushed.digest).content == pushed.body
    assert oci.tags(repo_name) == ["keep"]


def test_delete_unknown_manifest_is_404(oci: OCIClient, repo_name: str) -> None:
    oci.push_image(repo_name, "present")
    absent = digest_of(b"absent")
    assert_error(oci.http.delete(f"/v2/{repo_name}/manifests/{absent}"), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.http.delete(f"/v2/{repo_name}/manifests/absent"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_in_unknown_repository_is_404(client: httpx.Client) -> None:
    response = client.delete(f"/v2/no/such/repo/manifests/{digest_of(b'x')}")
    assert_error(response, 404, "MANIFEST_UNKNOWN")


def test_delete_blob(oci: OCIClient, repo_name: str) -> None:
    digest = oci.push_blob(repo_name, b"blob to delete")
    response = oci.http.delete(f"/v2/{repo_name}/blobs/{digest}")
    assert response.status_code == 202, describe(response)
    assert oci.head_blob(repo_name, digest).status_code == 404
    assert_error(oci.http.get(f"/v2/{repo_name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(oci.http.delete(f"/v2/{repo_name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_deleting_a_blob_in_one_repository_keeps_it_in_another(oci: OCIClient, repo_name: str) -> None:
    data = f"shared by two repositories {repo_name}".encode()
    digest = oci.push_blob(f"{repo_name}/one", data)
    oci.push_blob(f"{repo_name}/two", data)
    assert oci.http.delete(f"/v2/{repo_name}/one/blobs/{digest}").status_code == 202
    assert oci.head_blob(f"{repo_name}/one", digest).status_code == 404
    kept = oci.http.get(f"/v2/{repo_name}/two/blobs/{digest}")
    assert kept.status_code == 200, describe(kept)
    assert kept.content == data


def test_pushing_again_after_delete_works(oci: OCIClient, repo_name: str) -> None:
    pushed = oci.push_image(repo_name, "again")
    assert oci.http.delete(f"/v2/{repo_name}/manifests/{pushed.digest}").status_code == 202
    again = oci.push_image(repo_name, "again")
    assert again.digest == pushed.digest
    assert oci.get_manifest(repo_name, "again").content == pushed.body


def _blobs_of(manifest: bytes) -> list[str]:
    document = json.loads(manifest)
    return [document["config"]["digest"], *(layer["digest"] for layer in document["layers"])]


def assert_image_pulls(oci: OCIClient, repo: str, reference: str, pushed: PushedManifest) -> None:
    got = oci.get_manifest(repo, reference)
    assert got.status_code == 200 and got.content == pushed.body, describe(got)
    for digest in _blobs_of(pushed.body):
        blob = oci.http.get(f"/v2/{repo}/blobs/{digest}")
        assert blob.status_code == 200 and digest_of(blob.content) == digest, describe(blob)


def test_a_blob_a_manifest_uses_cannot_be_deleted(oci: OCIClient, repo_name: str) -> None:
    """Unlinking a layer or config of an image broke the image: its tag still resolved and its pulls
    failed on the missing blob. Refused (405, one of end-10's answers) until no manifest uses it."""
    pushed = oci.push_image(repo_name, "v1")
    for digest in _blobs_of(pushed.body):
        refused = oci.http.delete(f"/v2/{repo_name}/blobs/{digest}")
        assert_error(refused, 405, "DENIED")
        message = refused.json()["errors"][0]["message"]
        assert pushed.digest in message and "delete the manifest" in message, message
    assert_image_pulls(oci, repo_name, "v1", pushed)
    # Untagged, the manifest still uses them: deleting the tag is not enough.
    assert oci.http.delete(f"/v2/{repo_name}/manifests/v1").status_code == 202
    assert_error(oci.http.delete(f"/v2/{repo_name}/blobs/{_blobs_of(pushed.body)[1]}"), 405, "DENIED")
    assert_image_pulls(oci, repo_name, pushed.digest, pushed)
    # Once the manifest is gone, so is the reason.
    assert oci.http.delete(f"/v2/{repo_name}/manifests/{pushed.digest}").status_code == 202
    for digest in _blobs_of(pushed.body):
        response = oci.http.delete(f"/v2/{repo_name}/blobs/{digest}")
        assert response.status_code == 202, describe(response)
        assert oci.head_blob(repo_name, digest).status_code == 404


def test_a_blob_used_only_in_another_repository_can_be_deleted_here(oci: OCIClient, repo_name: str) -> None:
    pushed = oci.push_image(f"{repo_name}/user", "v1")
    config, layer = _blobs_of(pushed.body)
    bystander = f"{repo_name}/bystander"
    for digest in (config, layer):
        mounted = oci.start_upload(bystander, mount=digest, **{"from": f"{repo_name}/user"})
        assert mounted.status_code == 201, describe(mounted)
        assert oci.http.delete(f"/v2/{bystander}/blobs/{digest}").status_code == 202
    assert_image_pulls(oci, f"{repo_name}/user", "v1", pushed)


def test_the_blobs_of_an_index_child_cannot_be_deleted(oci: OCIClient, repo_name: str) -> None:
    child = oci.push_image(repo_name)  # untagged: only the index holds it
    index = index_manifest([child.descriptor(platform={"os": "linux", "architecture": "amd64"})])
    oci.push_manifest(repo_name, "multi", index, OCI_INDEX)
    for digest in _blobs_of(child.body):
        assert_error(oci.http.delete(f"/v2/{repo_name}/blobs/{digest}"), 405, "DENIED")
    assert_image_pulls(oci, repo_name, child.digest, child)


def test_deletes_disabled_answer_405_unsupported(make_server: Callable[..., RunningServer]) -> None:
    server = make_server({"storage": {"delete": {"enabled": False}}})
    repo = "nodelete/app"
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        pushed = oci.push_image(repo, "v1")
        blob = oci.push_blob(repo, b"undeletable")
        for target in (f"manifests/{pushed.digest}", "manifests/v1", f"blobs/{blob}"):
            url = f"/v2/{repo}/{target}"
            assert_error(http.delete(url), 405, "UNSUPPORTED")
        assert oci.get_manifest(repo, "v1").content == pushed.body
        assert oci.head_blob(repo, blob).status_code == 200
