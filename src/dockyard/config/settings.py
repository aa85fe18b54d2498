"""The one typed settings model. Loaded once at startup by `dockyard.config.loader`.

Key names follow registry:2's config.yml where the feature is the same, so its files work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TLSSettings(_Section):
    certificate: Path | None = None
    key: Path | None = None


class HTTPSettings(_Section):
    addr: str = "0.0.0.0:5000"
    # Public base URL used in Location headers when set; otherwise the request's own host.
    host: str | None = None
    secret: str | None = None
    workers: int = Field(default=2, ge=1, le=64)
    tls: TLSSettings = TLSSettings()


class FilesystemStorage(_Section):
    rootdirectory: Path | None = None  # default: <datadir>/storage


class InMemoryStorage(_Section):
    pass


class DeleteSettings(_Section):
    enabled: bool = True


class UploadPurging(_Section):
    enabled: bool = True
    age: str = "168h"  # a duration: 90s, 30m, 168h, 2h30m
    interval: str = "24h"
    dryrun: bool = False


class ReadOnlySettings(_Section):
    enabled: bool = False


class MaintenanceSettings(_Section):
    uploadpurging: UploadPurging = UploadPurging()
    readonly: ReadOnlySettings = ReadOnlySettings()


class CacheSettings(_Section):
    blobdescriptor: str | None = None  # accepted from registry:2 configs; dockyard always caches


class StorageSettings(_Section):
    filesystem: FilesystemStorage | None = None
    inmemory: InMemoryStorage | None = None
    delete: DeleteSettings = DeleteSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    cache: CacheSettings = CacheSettings()

    @property
    def driver_name(self) -> Literal["filesystem", "inmemory"]:
        return "inmemory" if self.inmemory is not None else "filesystem"


class DatabaseSettings(_Section):
    url: str | None = None  # default: sqlite:///<datadir>/dockyard.db


class AccessLogSettings(_Section):
    disabled: bool = False


class LogSettings(_Section):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    formatter: Literal["json", "text", "logstash"] = "text"
    accesslog: AccessLogSettings = AccessLogSettings()


class MetricsSettings(_Section):
    enabled: bool = True


class Settings(_Section):
    version: str | None = None  # "0.1" marks a registry:2 config file
    datadir: Path = Path("data")
    http: HTTPSettings = HTTPSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()

    @property
    def is_registry2_config(self) -> bool:
        return self.version is not None and self.version.startswith("0.")

    @property
    def storage_root(self) -> Path:
        fs = self.storage.filesystem
        return fs.rootdirectory if fs and fs.rootdirectory else self.datadir / "storage"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.datadir / 'dockyard.db'}"
