"""What maintenance jobs need from the composition root, and how they report progress.

`app.Services` satisfies `MaintenanceServices` structurally; this package sits below `app` and so
cannot import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from dockyard.db.session import Database
from dockyard.errors import Category, DockyardError
from dockyard.registry.services import Registry
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver.base import StorageDriver

COPY_CHUNK = 1024 * 1024


class MaintenanceServices(Protocol):
    @property
    def db(self) -> Database: ...

    @property
    def driver(self) -> StorageDriver: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def registry(self) -> Registry: ...


class Progress(Protocol):
    """A progress display: one phase at a time, each with a total (bytes or items)."""

    def phase(self, description: str, total: int) -> None: ...

    def advance(self, amount: int = 1) -> None: ...


class NullProgress:
    def phase(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


class MaintenanceError(DockyardError):
    # A maintenance command's failure (a copy, a target it cannot use): the command reports it.
    category = Category.INTERNAL
    message = "maintenance failed"


@dataclass
class Problems:
    """What a job found wrong; the CLI exits non-zero when there is any."""

    items: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.items.append(problem)

    def __bool__(self) -> bool:
        return bool(self.items)


def read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(COPY_CHUNK):
        yield chunk


def hasher_for(digest: str) -> hashlib._Hash:
    """A fresh hash object for the digest's algorithm (sha256, sha512)."""
    return hashlib.new(digest.split(":", 1)[0])
