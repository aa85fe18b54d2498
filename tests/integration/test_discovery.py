"""Content discovery: tag lists and the catalog with pagination, and the referrers API."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.ociclient import (
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    OCIClient,
    assert_error,
    describe,
    descriptor,
    digest_of,
    empty_descriptor,
    image_manifest,
    index_manifest,
    link_query,
)
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

TAGS = ["v1.0", "alpha", "latest", "beta", "v1.1", "0.9"]  # sorted: 0.9 alpha beta latest v1.0 v1.1


@pytest.fixture
def tagged_repo(oci: OCIClient, repo_name: str) -> str:
    pushed = oci.push_image(repo_name, TAGS[0])
    for tag in TAGS[1:]:
        oci.push_manifest(repo_name, tag, pushed.body, pushed.media_type)
    return repo_name


def test_tags_list_is_lexically_sorted(oci: OCIClient, tagged_repo: str) -> None:
    response = oci.http.get(f"/v2/{tagged_repo}/tags/list")
    assert response.status_code == 200, describe(response)
    assert response.json() == {"name": tagged_repo, "tags": sorted(TAGS)}
    assert "Link" not in response.headers


def test_tags_pagination_with_link_header(oci: OCIClient, tagged_repo: str) -> None:
    expected = sorted(TAGS)
    response = oci.http.get(f"/v2/{tagged_repo}/tags/list", params={"n": 4})
    assert response.status_code == 200, describe(response)
    assert response.json() == {"name": tagged_repo, "tags": expected[:4]}
    path, query = link_query(response.headers["Link"])
    assert path == f"/v2/{tagged_repo}/tags/list"
    assert query == {"n": ["4"], "last": [expected[3]]}
    second = oci.http.get(f"/v2/{tagged_repo}/tags/list", params={"n": 4, "last": expected[3]})
    assert second.status_code == 200, describe(second)
    assert second.json()["tags"] == expected[4:]
    assert "Link" not in second.headers


def test_tags_pages_followed_through_links_cover_all_tags(oci: OCIClient, tagged_repo: str) -> None:
    seen: list[str] = []
    url = f"/v2/{tagged_repo}/tags/list?n=2"
    for _ in range(10):
        response = oci.http.get(url)
        assert response.status_code == 200, describe(response)
        page = response.json()["tags"]
        assert len(page) == 2  # 6 tags: every page is full
        seen += page
        if "Link" not in response.headers:
            break
        path, query = link_query(response.headers["Link"])
        url = str(httpx.URL(path, params={key: values[0] for key, values in query.items()}))
    assert seen == sorted(TAGS)


def test_tags_last_without_n(oci: OCIClient, tagged_repo: str) -> None:
    response = oci.http.get(f"/v2/{tagged_repo}/tags/list", params={"last": "beta"})
    assert response.status_code == 200, describe(response)
    assert response.json()["tags"] == ["latest", "v1.0", "v1.1"]


def test_tags_last_that_is_not_a_tag_starts_after_it(oci: OCIClient, tagged_repo: str) -> None:
    response = oci.http.get(f"/v2/{tagged_repo}/tags/list", params={"n": 2, "last": "b"})
    assert response.status_code == 200, describe(response)
    assert response.json()["tags"] == ["beta", "latest"]


def test_tags_n_zero_is_empty_without_link(oci: OCIClient, tagged_repo: str) -> None:
    response = oci.http.get(f"/v2/{tagged_repo}/tags/list", params={"n": 0})
    assert response.status_code == 200, describe(response)
    assert response.json() == {"name": tagged_repo, "tags": []}
    assert "Link" not in response.headers


def test_tags_n_larger_than_count_returns_all_without_link(oci: OCIClient, tagged_repo: str) -> None:
    response = oci.http.get(f"/v2/{tagged_repo}/tags/list", params={"n": 100})
    assert response.status_code == 200, describe(response)
    assert response.json()["tags"] == sorted(TAGS)
    assert "Link" not in response.headers


def test_tags_of_unknown_repository_is_404_name_unknown(client: httpx.Client) -> None:
    assert_error(client.get("/v2/never/pushed/tags/list"), 404, "NAME_UNKNOWN")


def test_catalog_is_sorted_and_paginated(make_server: Callable[..., RunningServer]) -> None:
    server = make_server()
    names = ["zeta/app", "alpha", "alpha/sub", "mid-name", "beta.x"]
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        for name in names:
            oci.push_image(name, "latest")
        full = http.get("/v2/_catalog")
        assert full.status_code == 200, describe(full)
        assert full.json() == {"repositories": sorted(names)}
        first = http.get("/v2/_catalog", params={"n": 2})
        assert first.status_code == 200, describe(first)
        assert first.json() == {"repositories": sorted(names)[:2]}
        path, query = link_query(first.headers["Link"])
        assert path == "/v2/_catalog"
        assert query == {"n": ["2"], "last": [sorted(names)[1]]}
        rest = http.get("/v2/_catalog", params={"n": 10, "last": sorted(names)[1]})
        assert rest.json() == {"repositories": sorted(names)[2:]}
        assert "Link" not in rest.headers
        empty = http.get("/v2/_catalog", params={"n": 0})
        assert empty.status_code == 200, describe(empty)
        assert empty.json() == {"repositories": []}
        assert "Link" not in empty.headers
        assert oci.catalog() == sorted(names)


# --- referrers ------------------------------------------------------------------------------
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE_CONFIG = "application/vnd.example.signature.config.v1+json"


def test_referrers_lists_manifests_whose_subject_is_the_digest(oci: OCIClient, repo_name: str) -> None:
    subject = oci.push_image(repo_name, "app")
    oci.push_blob(repo_name, EMPTY_JSON)
    sbom_body = image_manifest(empty_descriptor(), [empty_descriptor()], artifact_type=SBOM,
                               subject=subject.descriptor(), annotations={"org.example.format": "spdx"})
    sbom = oci.push_manifest(repo_name, digest_of(sbom_body), sbom_body, OCI_MANIFEST)
    # No artifactType: the descriptor's artifactType is the config's media type.
    sig_config = b'{"signer":"ci"}'
    oci.push_blob(repo_name, sig_config)
    sig_body = image_manifest(descriptor(SIGNATURE_CONFIG, sig_config), [], subject=subject.descriptor())
    signature = oci.push_manifest(repo_name, digest_of(sig_body), sig_body, OCI_MANIFEST)
    # An index with a subject and no artifactType: artifactType is omitted.
    index_body = index_manifest([sbom.descriptor()], subject=subject.descriptor(),
                                annotations={"org.example.kind": "bundle"})
    index = oci.push_manifest(repo_name, digest_of(index_body), index_body, OCI_INDEX)
    unrelated = oci.push_image(repo_name, "other", seed="unrelated")

    response = oci.http.get(f"/v2/{repo_name}/referrers/{subject.digest}")
    assert response.status_code == 200, describe(response)
    assert response.headers["Content-Type"] == OCI_INDEX
    document = response.json()
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == OCI_INDEX
    by_digest = {entry["digest"]: entry for entry in document["manifests"]}
    assert unrelated.digest not in by_digest
    assert by_digest == {
        sbom.digest: sbom.descriptor(artifactType=SBOM, annotations={"org.example.format": "spdx"}),
        signature.digest: signature.descriptor(artifactType=SIGNATURE_CONFIG),
        index.digest: index.descriptor(annotations={"org.example.kind": "bundle"}),
    }
    assert len(document["manifests"]) == 3


def test_referrers_artifact_type_filter(oci: OCIClient, repo_name: str) -> None:
    subject = oci.push_image(repo_name, "app")
    oci.push_blob(repo_name, EMPTY_JSON)
    pushed = {}
    for artifact_type in (SBOM, "application/vnd.example.other.v1"):
        body = image_manifest(empty_descriptor(), [empty_descriptor()], artifact_type=artifact_type,
                              subject=subject.descriptor())
        pushed[artifact_type] = oci.push_manifest(repo_name, digest_of(body), body, OCI_MANIFEST)
    response = oci.http.get(f"/v2/{repo_name}/referrers/{subject.digest}", params={"artifactType": SBOM})
    assert response.status_code == 200, describe(response)
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert response.json()["manifests"] == [pushed[SBOM].descriptor(artifactType=SBOM)]


def test_referrers_of_a_digest_without_referrers_is_an_empty_index(oci: OCIClient, repo_name: str) -> None:
    subject = oci.push_image(repo_name, "lonely")
    for digest in (subject.digest, digest_of(b"never pushed anywhere")):
        response = oci.http.get(f"/v2/{repo_name}/referrers/{digest}")
        assert response.status_code == 200, describe(response)
        assert response.headers["Content-Type"] == OCI_INDEX
        document = response.json()
        assert document["schemaVersion"] == 2
        assert document["mediaType"] == OCI_INDEX
        assert document["manifests"] == []


def test_referrer_pushed_before_its_subject_is_listed(oci: OCIClient, repo_name: str) -> None:
    oci.push_blob(repo_name, EMPTY_JSON)
    future = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"subject to come"), "size": 15}
    body = image_manifest(empty_descriptor(), [empty_descriptor()], artifact_type=SBOM, subject=future)
    referrer = oci.push_manifest(repo_name, digest_of(body), body, OCI_MANIFEST)
    response = oci.http.get(f"/v2/{repo_name}/referrers/{future['digest']}")
    assert response.status_code == 200, describe(response)
    assert response.json()["manifests"] == [referrer.descriptor(artifactType=SBOM)]


def test_deleted_referrer_leaves_the_list(oci: OCIClient, repo_name: str) -> None:
    subject = oci.push_image(repo_name, "app")
    oci.push_blob(repo_name, EMPTY_JSON)
    body = image_manifest(empty_descriptor(), [empty_descriptor()], artifact_type=SBOM,
                          subject=subject.descriptor())
    referrer = oci.push_manifest(repo_name, digest_of(body), body, OCI_MANIFEST)
    deleted = oci.http.delete(f"/v2/{repo_name}/manifests/{referrer.digest}")
    assert deleted.status_code == 202, describe(deleted)
    response = oci.http.get(f"/v2/{repo_name}/referrers/{subject.digest}")
    assert response.status_code == 200, describe(response)
    assert response.json()["manifests"] == []


def test_referrers_are_scoped_to_the_repository(oci: OCIClient, repo_name: str) -> None:
    subject = oci.push_image(repo_name, "app")
    other = f"{repo_name}-other"
    oci.push_blob(other, EMPTY_JSON)
    body = image_manifest(empty_descriptor(), [empty_descriptor()], artifact_type=SBOM,
                          subject=subject.descriptor())
    oci.push_manifest(other, digest_of(body), body, OCI_MANIFEST)
    response = oci.http.get(f"/v2/{repo_name}/referrers/{subject.digest}")
    assert response.status_code == 200, describe(response)
    assert response.json()["manifests"] == []


@pytest.mark.parametrize("digest", ["sha256:xyz", "sha256:" + "a" * 63, "md5:" + "a" * 32, "notadigest"])
def test_referrers_with_invalid_digest_is_400(oci: OCIClient, repo_name: str, digest: str) -> None:
    oci.push_image(repo_name, "app")
    assert_error(oci.http.get(f"/v2/{repo_name}/referrers/{digest}"), 400)
