"""The 201 answers of a cross-repository mount, a blob commit and a manifest PUT, built without
Starlette's header encoding (api/oci/responses.py `created`): the same headers, in the same order; and
a mount's query string parsed once per process, with the same meaning every time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dockyard.api.oci import uploads
from tests.support.inprocess import TestClient, in_process_client

LAYER = b"a layer for the mounts"
DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
API_VERSION = ("docker-distribution-api-version", "registry/2.0")


def headers(answer: object) -> list[tuple[str, str]]:
    """The answer's headers as sent, less the request id the middleware adds."""
    return [(name, value) for name, value in answer.headers.multi_items() if name != "x-request-id"]  # type: ignore[attr-defined]


def push_layer(http: TestClient, repository: str) -> None:
    answer = http.post(f"/v2/{repository}/blobs/uploads/", params={"digest": DIGEST}, content=LAYER)
    assert answer.status_code == 201, answer.text
    assert headers(answer) == blob_created(repository)


def blob_created(repository: str) -> list[tuple[str, str]]:
    """The headers, in order, of a 201 for a blob that is now in `repository` (a push or a mount)."""
    return [
        API_VERSION,
        ("location", f"/v2/{repository}/blobs/{DIGEST}"),
        ("docker-content-digest", DIGEST),
        ("content-length", "0"),
    ]


def test_mounts_answer_201_with_the_blobs_headers_and_the_same_query_twice(tmp_path: Path) -> None:
    with in_process_client(tmp_path, {"auth": {"enabled": False}}) as http:
        push_layer(http, "team/base")
        query = f"mount={DIGEST}&from=team%2Fbase"  # percent-encoded: decoded as Starlette does
        for repository in ("team/one", "team/two"):  # the second finds the first's parsed query
            answer = http.post(f"/v2/{repository}/blobs/uploads/?{query}")
            assert answer.status_code == 201, answer.text
            assert headers(answer) == blob_created(repository)
            assert http.get(f"/v2/{repository}/blobs/{DIGEST}").content == LAYER
        assert query.encode() in uploads._MOUNT_QUERIES
        missing = "sha256:" + "0" * 64  # a mount of a blob the source lacks starts an upload instead
        answer = http.post(f"/v2/team/three/blobs/uploads/?mount={missing}&from=team/base")
        assert answer.status_code == 202, answer.text


def test_a_manifest_put_answers_201_with_its_subject_last(tmp_path: Path) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    with in_process_client(tmp_path, {"auth": {"enabled": False}}) as http:
        for blob, digest in ((config, config_digest), (LAYER, DIGEST)):
            http.post("/v2/team/app/blobs/uploads/", params={"digest": digest}, content=blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DIGEST,
                        "size": len(LAYER)}],
        }  # fmt: skip
        body = json.dumps(manifest).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        kind = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        answer = http.put("/v2/team/app/manifests/latest", content=body, headers=kind)
        assert answer.status_code == 201, answer.text
        assert headers(answer) == [
            API_VERSION,
            ("location", f"/v2/team/app/manifests/{digest}"),
            ("docker-content-digest", digest),
            ("content-length", "0"),
        ]
        referrer = {**manifest, "subject": {"mediaType": manifest["mediaType"], "digest": digest,
                                            "size": len(body)}}  # fmt: skip
        referring = json.dumps(referrer).encode()
        answer = http.put("/v2/team/app/manifests/sig", content=referring, headers=kind)
        assert answer.status_code == 201, answer.text
        assert headers(answer)[-1] == ("oci-subject", digest)
        assert [name for name, _ in headers(answer)][:4] == [
            API_VERSION[0],
            "location",
            "docker-content-digest",
            "content-length",
        ]
