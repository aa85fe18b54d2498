"""botocore's errors as the storage driver contract's: PathNotFound, StorageFull and StorageError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from dockyard.errors import PathNotFound, StorageError, StorageFull

NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404", "NoSuchUpload"}
# S3 itself never fills up; self-hosted object stores do: MinIO says XMinioStorageFull, Ceph RGW
# and others answer 507 Insufficient Storage (or a quota error).
FULL_CODES = {"XMinioStorageFull", "InsufficientStorage", "QuotaExceeded", "507"}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def s3_errors(path: str) -> Iterator[None]:
    """Translate botocore's errors into the contract's."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in NOT_FOUND_CODES:
            raise PathNotFound(f"path not found: {path}") from exc
        if code in FULL_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 507:
            raise StorageFull() from exc
        raise StorageError(f"storage error on {path}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"storage error on {path}: {exc}") from exc
