"""The base wrapper every storage driver is built in (`build_driver`): the one place for checks that are
the same for every driver, so no driver repeats them (distribution's `storagedriver/base`).

Today that is the path check: every path a caller hands in -- to the driver, and as a writer's `commit_to`
destination -- goes through `check_path` before the driver sees it, so a driver may take its paths as
valid. What only one backend can check stays in it (the filesystem driver still refuses a symlink that
resolves outside its root).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from dockyard.storage.driver.base import FileInfo, FileWriter, PathLock, StorageDriver, check_path


class CheckedDriver:
    """A `StorageDriver` that checks every path, then calls `inner`."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name

    def get_content(self, path: str) -> bytes:
        return self.inner.get_content(check_path(path))

    def put_content(self, path: str, data: bytes) -> None:
        self.inner.put_content(check_path(path), data)

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        return self.inner.open_read(check_path(path), offset)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return CheckedWriter(self.inner.writer(check_path(path), append))

    def stat(self, path: str) -> FileInfo:
        return self.inner.stat(check_path(path))

    def list(self, path: str) -> list[str]:
        return self.inner.list(path if path == "" else check_path(path))  # "" is the root

    def move(self, source: str, dest: str) -> None:
        self.inner.move(check_path(source), check_path(dest))

    def delete(self, path: str) -> None:
        self.inner.delete(check_path(path))

    def delete_files(self, paths: Sequence[str]) -> dict[str, Exception]:
        for path in paths:  # all of them before any is deleted
            check_path(path)
        return self.inner.delete_files(paths)

    def url_for(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        return self.inner.url_for(check_path(path), method, expires_in)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(check_path(path))

    def unlinked_writer(self, path: str) -> FileWriter | None:
        writer = self.inner.unlinked_writer(check_path(path))
        return None if writer is None else CheckedWriter(writer)

    def try_lock(self, path: str) -> PathLock | None:
        return self.inner.try_lock(check_path(path))


class CheckedWriter:
    """A driver's writer whose `commit_to` destination is checked first. `write` is the inner
    writer's own bound method: the hot path of every push pays no extra call."""

    def __init__(self, inner: FileWriter) -> None:
        self.inner = inner
        self.write = inner.write
        self.close = inner.close
        self.commit = inner.commit
        self.cancel = inner.cancel
        self.truncate = inner.truncate

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def fingerprint(self) -> str | None:
        return self.inner.fingerprint

    def commit_to(self, dest: str) -> None:
        self.inner.commit_to(check_path(dest))
