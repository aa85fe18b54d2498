"""Content-addressed blobs: bytes in the driver, one row each in the `blobs` table.

Commit order (crash-safe): verify size and digest, land the bytes at the content address (nothing
to do if it is already there; see `UploadStore.place`), then record in the DB. A crash between the
last two leaves bytes with no row, which is harmless: the next commit of the same digest replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Connection, select

from dockyard.content.digest import Digest
from dockyard.db.dialect import insert_ignore
from dockyard.db.session import Database
from dockyard.errors import SizeInvalid
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.models import Blob
from dockyard.storage.paths import blob_data_path
from dockyard.storage.uploads import UploadState, UploadStore


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """How to send a blob: a local file for zero-copy, a presigned URL, or a stream to open."""

    digest: str
    size: int
    local_path: str | None
    redirect_url: str | None


class BlobStore:
    def __init__(self, db: Database, driver: StorageDriver, uploads: UploadStore) -> None:
        self._db = db
        self._driver = driver
        self._uploads = uploads

    def size_of(self, connection: Connection, digest: str) -> int | None:
        return connection.scalar(select(Blob.size).where(Blob.digest == digest))

    def record(self, connection: Connection, digest: str, size: int) -> None:
        insert_ignore(connection, Blob, {"digest": digest, "size": size})

    def place_upload(self, state: UploadState, digest: Digest, expected_size: int | None = None) -> int:
        """Verify the upload's bytes and move them to the blob's content address. Returns the size.

        The caller records the blob (and its repository link) in the DB afterwards."""
        if expected_size is not None and expected_size != state.size:
            raise SizeInvalid(detail={"expected": expected_size, "received": state.size})
        with self._db.read() as connection:
            known = self.size_of(connection, str(digest)) is not None
        # A blob already stored is not written again: the upload's bytes are only verified.
        self._uploads.place(state, digest, None if known else blob_data_path(str(digest)))
        return state.size

    def locate(self, digest: str, size: int, redirect: bool = False) -> BlobLocation:
        path = blob_data_path(digest)
        url = self._driver.url_for(path) if redirect else None
        return BlobLocation(digest, size, self._driver.local_path(path), url)

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        return self._driver.open_read(blob_data_path(digest), offset)
