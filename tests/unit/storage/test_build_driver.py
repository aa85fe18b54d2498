"""Drivers are chosen by config name; a wrong name or option stops startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config.storage_settings import DRIVER_NAMES as SETTINGS_DRIVER_NAMES
from dockyard.config.storage_settings import StorageSettings
from dockyard.errors import ConfigError, InvalidPath
from dockyard.storage.driver import DRIVER_NAMES, CheckedDriver, StorageDriver, build_driver
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.driver.inmemory import InMemoryDriver


def test_filesystem(tmp_path: Path) -> None:
    driver = build_driver("filesystem", rootdirectory=tmp_path / "s")
    assert isinstance(driver, CheckedDriver) and isinstance(driver.inner, FilesystemDriver)
    assert isinstance(driver, StorageDriver)
    driver.put_content("a", b"x")
    assert (tmp_path / "s" / "a").read_bytes() == b"x"


def test_filesystem_accepts_a_string_root(tmp_path: Path) -> None:
    driver = build_driver("filesystem", rootdirectory=str(tmp_path))
    assert driver.local_path("a") == str(tmp_path.resolve() / "a")


def test_inmemory() -> None:
    driver = build_driver("inmemory")
    assert isinstance(driver, CheckedDriver) and isinstance(driver.inner, InMemoryDriver)


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a//b", "a/./b", "caf\u00e9", ""])
def test_the_base_wrapper_refuses_bad_paths_the_drivers_no_longer_check(tmp_path: Path, path: str) -> None:
    driver = build_driver("filesystem", rootdirectory=tmp_path / "s")
    with pytest.raises(InvalidPath):
        driver.put_content(path, b"x")
    writer = driver.writer("uploads/u/data")
    writer.write(b"kept")
    with pytest.raises(InvalidPath):
        writer.commit_to(path)
    writer.commit()
    assert driver.get_content("uploads/u/data") == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing written beside the root


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
