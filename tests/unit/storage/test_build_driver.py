"""Drivers are chosen by config name; a wrong name or option stops startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config.storage_settings import DRIVER_NAMES as SETTINGS_DRIVER_NAMES
from dockyard.config.storage_settings import StorageSettings
from dockyard.errors import ConfigError
from dockyard.storage.driver import DRIVER_NAMES, StorageDriver, build_driver
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.driver.inmemory import InMemoryDriver


def test_filesystem(tmp_path: Path) -> None:
    driver = build_driver("filesystem", rootdirectory=tmp_path / "s")
    assert isinstance(driver, FilesystemDriver)
    assert isinstance(driver, StorageDriver)
    driver.put_content("a", b"x")
    assert (tmp_path / "s" / "a").read_bytes() == b"x"


def test_filesystem_accepts_a_string_root(tmp_path: Path) -> None:
    driver = build_driver("filesystem", rootdirectory=str(tmp_path))
    assert driver.local_path("a") == str(tmp_path.resolve() / "a")


def test_inmemory() -> None:
    assert isinstance(build_driver("inmemory"), InMemoryDriver)


def test_unknown_driver_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        build_driver("s4")
    assert "s4" in str(raised.value)
    for name in DRIVER_NAMES:
        assert name in str(raised.value)


def test_filesystem_needs_a_root() -> None:
    with pytest.raises(ConfigError, match="rootdirectory"):
        build_driver("filesystem")


def test_unknown_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bucket"):
        build_driver("filesystem", rootdirectory=tmp_path, bucket="x")
    with pytest.raises(ConfigError):
        build_driver("inmemory", rootdirectory=tmp_path)


def test_the_settings_name_exactly_the_drivers_there_are() -> None:
    """The config names its drivers in one place (storage_settings.DRIVER_NAMES: the sections of
    `storage`, the loader's choices, registry:2's driver keys, `dockyard move`); the driver layer cannot
    import config, so this keeps the two lists one."""
    assert sorted(SETTINGS_DRIVER_NAMES) == sorted(DRIVER_NAMES)
    assert set(SETTINGS_DRIVER_NAMES) <= set(StorageSettings.model_fields)
