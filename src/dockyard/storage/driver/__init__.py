"""Storage drivers, and `build_driver` to make one from its config name and options, wrapped in the base
wrapper that checks every path for every driver (`checked.CheckedDriver`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError
from dockyard.storage.driver.base import FileInfo, FileWriter, StorageDriver, check_path
from dockyard.storage.driver.checked import CheckedDriver

__all__ = [
    "DRIVER_NAMES",
    "CheckedDriver",
    "FileInfo",
    "FileWriter",
    "StorageDriver",
    "build_driver",
    "check_path",
]


def _filesystem(rootdirectory: str | Path | None = None) -> StorageDriver:
    if not rootdirectory:
        raise ConfigError("storage driver 'filesystem' needs the option 'rootdirectory'")
    from dockyard.storage.driver.filesystem import FilesystemDriver

    return FilesystemDriver(Path(rootdirectory))


def _inmemory() -> StorageDriver:
    from dockyard.storage.driver.inmemory import InMemoryDriver

    return InMemoryDriver()


def _flag(value: bool | str | None, default: bool) -> bool:
    """A boolean option, also as the strings env variables carry ("true", "false", "1", "0")."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _s3(
    bucket: str | None = None,
    region: str | None = None,
    regionendpoint: str | None = None,
    accesskey: str | None = None,
    secretkey: str | None = None,
    rootdirectory: str | None = None,
    secure: bool | str | None = None,
    v4auth: bool | str | None = None,
    chunksize: int | str | None = None,
    forcepathstyle: bool | str | None = None,
    skipverify: bool | str | None = None,
) -> StorageDriver:
    """registry:2's `storage.s3` options; without keys, boto3's usual credential chain applies."""
    if not bucket:
        raise ConfigError("storage driver 's3' needs the option 'bucket'")
    if not region and not regionendpoint:
        raise ConfigError("storage driver 's3' needs the option 'region' (or 'regionendpoint')")
    from dockyard.storage.driver.s3 import DEFAULT_CHUNK_SIZE, MIN_PART_SIZE, S3Driver

    endpoint = regionendpoint or None
    if endpoint and "://" not in endpoint:
        endpoint = ("https://" if _flag(secure, True) else "http://") + endpoint
    try:
        size = int(chunksize) if chunksize not in (None, "") else DEFAULT_CHUNK_SIZE
    except ValueError as exc:
        raise ConfigError(f"storage.s3.chunksize must be a number of bytes, not {chunksize!r}") from exc
    if size < MIN_PART_SIZE:
        raise ConfigError(f"storage.s3.chunksize must be at least {MIN_PART_SIZE} (S3's minimum part size)")
    return S3Driver(
        bucket,
        region=region or None,
        endpoint_url=endpoint,
        access_key=accesskey or None,
        secret_key=secretkey or None,
        rootdirectory=rootdirectory or "",
        chunksize=size,
        # A custom endpoint (SeaweedFS, MinIO, Ceph) rarely has per-bucket DNS names.
        force_path_style=_flag(forcepathstyle, endpoint is not None),
        v4auth=_flag(v4auth, True),
        verify=not _flag(skipverify, False),
    )


_FACTORIES: dict[str, Callable[..., StorageDriver]] = {
    "filesystem": _filesystem,
    "inmemory": _inmemory,
    "s3": _s3,
}
DRIVER_NAMES = tuple(sorted(_FACTORIES))


def build_driver(name: str, **options: Any) -> StorageDriver:
    """The driver called name, configured by options (the keys of its config section).

    An unknown name or option is a ConfigError: config mistakes stop startup, never fall back. The driver
    comes in the base wrapper (`CheckedDriver`: paths are checked there, not in each driver); the driver
    itself is its `inner`.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown storage driver {name!r}; valid drivers: {', '.join(DRIVER_NAMES)}")
    try:
        driver = factory(**options)
    except TypeError as exc:  # an option the driver does not take
        raise ConfigError(f"invalid options for storage driver {name!r}: {exc}") from exc
    return CheckedDriver(driver)
