"""Where blobs and uploads live inside a driver, and that client input cannot steer it elsewhere."""

from __future__ import annotations

import pytest

from dockyard.errors import BlobUploadUnknown, DigestInvalid, UnsupportedDigest
from dockyard.storage.driver.base import check_path
from dockyard.storage.paths import (
    blob_data_path,
    check_upload_id,
    new_upload_id,
    upload_data_path,
    upload_path,
    uploads_root,
)

SHA256 = "sha256:" + "ab" + "0" * 62
SHA512 = "sha512:" + "cd" + "1" * 126


def test_blob_data_path_layout() -> None:
    assert blob_data_path(SHA256) == f"blobs/sha256/ab/ab{'0' * 62}/data"
    assert blob_data_path(SHA512) == f"blobs/sha512/cd/cd{'1' * 126}/data"
    check_path(blob_data_path(SHA512))


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256",
        "sha256:",
        "sha256:" + "A" * 64,  # uppercase hex is not canonical
        "sha256:" + "a" * 63,
        "sha256:../../etc/passwd",
        "sha256:" + "a" * 64 + "/../x",
        "../sha256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\x00",
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_blob_data_path_refuses_bad_digests(digest: str) -> None:
    with pytest.raises(DigestInvalid):
        blob_data_path(digest)


def test_blob_data_path_refuses_unknown_algorithm() -> None:
    with pytest.raises(UnsupportedDigest):
        blob_data_path("md5:" + "a" * 32)


def test_upload_paths() -> None:
    upload_id = new_upload_id()
    assert len(upload_id) == 32
    assert check_upload_id(upload_id) == upload_id
    assert upload_path(upload_id) == f"uploads/{upload_id}"
    assert upload_data_path(upload_id) == f"uploads/{upload_id}/data"
    assert upload_data_path(upload_id).startswith(uploads_root() + "/")
    check_path(upload_data_path(upload_id))


def test_new_upload_ids_differ() -> None:
    assert len({new_upload_id() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "upload_id",
    [
        "",
        "..",
        "../blobs",
        "0" * 32,  # right length, not a uuid4
        "3f2c7a3e9b1d4e5f8a6b7c8d9e0f1a2b".upper(),
        "3f2c7a3e-9b1d-4e5f-8a6b-7c8d9e0f1a2b",  # dashed form
        "3f2c7a3e9b1d4e5f8a6b7c8d9e0f1a2",  # 31 chars
        "3f2c7a3e9b1d4e5f8a6b7c8d9e0f1a2b0",  # 33 chars
        "3f2c7a3e9b1d4e5f8a6b7c8d9e0f1a2b\n",
        "3f2c7a3e9b1d4e5f8a6b7c8d9e0f1a2b/../../blobs",
        "3f2c7a3e9b1d4e5f8a6b7c8d9e0f1a2g",
    ],
)
def test_malformed_upload_id_is_an_unknown_upload(upload_id: str) -> None:
    for build in (check_upload_id, upload_path, upload_data_path):
        with pytest.raises(BlobUploadUnknown):
            build(upload_id)
