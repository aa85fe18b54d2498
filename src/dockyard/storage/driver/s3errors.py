"""botocore's errors as the storage driver contract's: PathNotFound and StorageError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from dockyard.errors import PathNotFound, StorageError

NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404", "NoSuchUpload"}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def s3_errors(path: str) -> Iterator[None]:
    """Translate botocore's errors into the contract's."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            raise PathNotFound(f"path not found: {path}") from exc
        raise StorageError(f"storage error on {path}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"storage error on {path}: {exc}") from exc
