"""Every storage driver passes the same conformance suite, in the base wrapper `build_driver` puts it in."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.driver.checked import CheckedDriver
from dockyard.storage.driver.conformance import StorageDriverConformance, UnlinkedWriterConformance
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.driver.inmemory import InMemoryDriver


class TestFilesystemDriver(UnlinkedWriterConformance):
    @pytest.fixture
    def driver(self, tmp_path: Path) -> StorageDriver:
        return CheckedDriver(FilesystemDriver(tmp_path / "storage"))


class TestInMemoryDriver(StorageDriverConformance):
    @pytest.fixture
    def driver(self) -> StorageDriver:
        return CheckedDriver(InMemoryDriver())
