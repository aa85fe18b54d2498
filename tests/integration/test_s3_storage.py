"""dockyard serving from S3-compatible storage (a real SeaweedFS): pushes land in the bucket, blob GETs
redirect to presigned URLs that return the exact bytes, and registry:2's S3 variables configure it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.support.ociclient import OCIClient
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


def _s3_section(store: RunningSeaweedFS, root: str) -> dict[str, object]:
    return {
        "bucket": store.bucket,
        "region": "us-east-1",
        "regionendpoint": store.endpoint,
        "accesskey": store.access_key,
        "secretkey": store.secret_key,
        "rootdirectory": root,
    }


def _keys(store: RunningSeaweedFS, prefix: str) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name="us-east-1",
    )
    listed = client.list_objects_v2(Bucket=store.bucket, Prefix=prefix.lstrip("/"))
    return [item["Key"] for item in listed.get("Contents", [])]


def test_push_lands_in_the_bucket_and_pulls_redirect_to_presigned_urls(
    make_server: Callable[..., RunningServer], seaweedfs: RunningSeaweedFS
) -> None:
    server = make_server({"storage": {"s3": _s3_section(seaweedfs, "/redirecting")}})
    data = os.urandom(3 * 1024 * 1024 + 17)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        digest = OCIClient(http).push_blob("team/app", data)
        head = http.head(f"/v2/team/app/blobs/{digest}")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
        response = http.get(f"/v2/team/app/blobs/{digest}")
        assert response.status_code == 307
        location = response.headers["location"]
        assert location.startswith(seaweedfs.endpoint) and "Signature" in location
        assert httpx.get(location, timeout=HTTP_TIMEOUT).content == data
    encoded = digest.split(":", 1)[1]
    assert any(key.endswith(f"{encoded}/data") for key in _keys(seaweedfs, "redirecting/blobs"))


def test_redirects_can_be_turned_off_and_registry2_variables_configure_s3(
    make_server: Callable[..., RunningServer], seaweedfs: RunningSeaweedFS, tmp_path: Path
) -> None:
    section = _s3_section(seaweedfs, "/proxied")
    env = {f"REGISTRY_STORAGE_S3_{key.upper()}": str(value) for key, value in section.items()}
    server = make_server({"storage": {"redirect": {"disable": True}}}, env={"REGISTRY_STORAGE": "s3", **env})
    data = os.urandom(200_000)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        pushed = OCIClient(http).push_image("team/app", "1.0")
        digest = OCIClient(http).push_blob("team/app", data)
        response = http.get(f"/v2/team/app/blobs/{digest}")
        assert response.status_code == 200 and response.content == data
        assert http.get(f"/v2/team/app/manifests/{pushed.digest}").status_code == 200
    assert _keys(seaweedfs, "proxied/blobs")
