"""The filesystem driver on a full disk: writes raise StorageFull (not a bare StorageError that becomes
a 500), reads go on, and writes work again once space is freed. On a real 2 MiB tmpfs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dockyard.errors import StorageError, StorageFull
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.driver.s3errors import s3_errors
from tests.support.tmpfs import fill, small_filesystem


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", "2m") as mounted:
        yield mounted


def test_a_full_disk_is_storage_full_for_every_kind_of_write_and_reads_go_on(disk: Path) -> None:
    driver = FilesystemDriver(disk / "storage")
    driver.put_content("blobs/kept", b"kept bytes")
    filler = disk / "filler"
    fill(filler)

    with pytest.raises(StorageFull) as raised:
        driver.put_content("blobs/new", b"x" * 65536)
    assert isinstance(raised.value, StorageError)  # what callers that catch storage errors expect
    assert "storage is full" in raised.value.message
    assert str(disk) not in raised.value.message  # no internal path in what a client may see
    writer = driver.writer("uploads/one")
    with pytest.raises(StorageFull):
        for _ in range(64):
            writer.write(b"y" * 65536)
        writer.commit()
    writer.cancel()
    assert driver.get_content("blobs/kept") == b"kept bytes"
    assert driver.list("blobs") == ["blobs/kept"]

    filler.unlink()
    driver.put_content("blobs/new", b"x" * 65536)
    assert driver.get_content("blobs/new") == b"x" * 65536


@pytest.mark.parametrize(
    ("code", "status"),
    [("XMinioStorageFull", 507), ("InsufficientStorage", 507), ("QuotaExceeded", 403), ("Whatever", 507)],
)
def test_an_object_store_that_is_full_is_storage_full(code: str, status: int) -> None:
    """What self-hosted object stores answer when their disks (or a quota) are full."""
    error = ClientError(
        {"Error": {"Code": code, "Message": "full"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )
    with pytest.raises(StorageFull), s3_errors("blobs/x"):
        raise error


def test_other_object_store_errors_stay_storage_errors() -> None:
    error = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "PutObject",
    )
    with pytest.raises(StorageError) as raised, s3_errors("blobs/x"):
        raise error
    assert not isinstance(raised.value, StorageFull)
