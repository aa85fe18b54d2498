"""Storage drivers, and `build_driver` to make one from its config name and options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError
from dockyard.storage.driver.base import FileInfo, FileWriter, StorageDriver, check_path

__all__ = ["DRIVER_NAMES", "FileInfo", "FileWriter", "StorageDriver", "build_driver", "check_path"]


def _filesystem(rootdirectory: str | Path | None = None) -> StorageDriver:
    if not rootdirectory:
        raise ConfigError("storage driver 'filesystem' needs the option 'rootdirectory'")
    from dockyard.storage.driver.filesystem import FilesystemDriver

    return FilesystemDriver(Path(rootdirectory))


def _inmemory() -> StorageDriver:
    from dockyard.storage.driver.inmemory import InMemoryDriver

    return InMemoryDriver()


_FACTORIES: dict[str, Callable[..., StorageDriver]] = {
    "filesystem": _filesystem,
    "inmemory": _inmemory,
}
DRIVER_NAMES = tuple(sorted(_FACTORIES))


def build_driver(name: str, **options: Any) -> StorageDriver:
    """The driver called name, configured by options (the keys of its config section).

    An unknown name or option is a ConfigError: config mistakes stop startup, never fall back.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown storage driver {name!r}; valid drivers: {', '.join(DRIVER_NAMES)}")
    try:
        return factory(**options)
    except TypeError as exc:  # an option the driver does not take
        raise ConfigError(f"invalid options for storage driver {name!r}: {exc}") from exc
