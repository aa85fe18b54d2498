"""The one typed settings model. Loaded once at startup by `dockyard.config.loader`.

Key names follow registry:2's config.yml where the feature is the same, so its files work.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dockyard.config.durations import parse_duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TLSSettings(_Section):
    certificate: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("certificate and key must be set together (or neither, for plain HTTP)")
        return self

    @property
    def enabled(self) -> bool:
        return self.certificate is not None


MIN_METRICS_TOKEN_LENGTH = 24  # a guessable scrape token would undo keeping metrics private

# host:port, :port or [ipv6]:port; the host part is a name or an address, never a URL.
_ADDR = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.%\w]+\]|[A-Za-z0-9._-]*):(?P<port>\d{1,5})$")


def split_addr(value: str) -> tuple[str, int]:
    """(host to bind, port) from host:port, :port (all interfaces) or [ipv6]:port; ValueError otherwise."""
    match = _ADDR.match(value)
    if match is None:
        raise ValueError(f"expected host:port or :port ([ipv6]:port for IPv6), got {value!r}")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return match.group("host").strip("[]") or "0.0.0.0", port


class HTTPSettings(_Section):
    addr: str = "0.0.0.0:5000"
    # Public base URL used in Location headers when set; otherwise the request's own host.
    host: str | None = None
    secret: str | None = Field(default=None, repr=False)  # never shown in reprs or logs
    workers: int = Field(default=2, ge=1, le=64)
    tls: TLSSettings = TLSSettings()
    # Extra response headers, as registry:2's http.headers: {"X-Content-Type-Options": ["nosniff"]}.
    headers: dict[str, list[str]] = Field(default_factory=dict)
    # CIDRs of the load balancers whose X-Forwarded-For/-Proto/-Host (or Forwarded) are believed.
    # Empty: none are; every client is the connection's peer (docs/ha.md).
    trusted_proxies: list[str] = Field(default_factory=list)
    # On SIGTERM: /readyz answers 503 at once, in-flight requests get this long to finish, then exit.
    drain_timeout: str = "30s"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated_proxies(cls, value: Any) -> Any:
        # DOCKYARD_HTTP_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.7 reads as one string.
        return [part for part in re.split(r"[,\s]+", value) if part] if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)"
                ) from None
        return value

    @field_validator("drain_timeout")
    @classmethod
    def _drain_duration(cls, value: str) -> str:
        if parse_duration(value) < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        split_addr(value)
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _single_values_as_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: [v] if isinstance(v, str) else v for name, v in value.items()}
        return value

    @property
    def bind_host(self) -> str:
        """The host to bind: brackets stripped from IPv6, all interfaces for `:port`."""
        return split_addr(self.addr)[0]

    @property
    def bind_port(self) -> int:
        return split_addr(self.addr)[1]


class FilesystemStorage(_Section):
    rootdirectory: Path | None = None  # default: <datadir>/storage


class InMemoryStorage(_Section):
    pass


class DeleteSettings(_Section):
    enabled: bool = True


def _positive_duration(value: str) -> str:
    if parse_duration(value) <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return value


class UploadPurging(_Section):
    enabled: bool = True
    age: str = "168h"  # a duration: 90s, 30m, 168h, 2h30m
    interval: str = "24h"
    dryrun: bool = False

    _check_durations = field_validator("age", "interval")(_positive_duration)

    @property
    def age_seconds(self) -> float:
        return parse_duration(self.age)

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class ReadOnlySettings(_Section):
    enabled: bool = False


class MaintenanceSettings(_Section):
    uploadpurging: UploadPurging = UploadPurging()
    readonly: ReadOnlySettings = ReadOnlySettings()


class CacheSettings(_Section):
    blobdescriptor: str | None = None  # accepted from registry:2 configs; dockyard always caches


class S3Storage(_Section):
    """registry:2's storage.s3 keys, for any S3-compatible store (AWS, Ceph RGW, SeaweedFS, MinIO)."""

    bucket: str
    region: str | None = None
    regionendpoint: str | None = None  # e.g. http://127.0.0.1:8333 for a local store
    accesskey: str | None = Field(default=None, repr=False)
    secretkey: str | None = Field(default=None, repr=False)
    rootdirectory: str | None = None
    secure: bool | None = None
    v4auth: bool | None = None
    chunksize: int | None = None
    forcepathstyle: bool | None = None
    skipverify: bool | None = None


class RedirectSettings(_Section):
    # registry:2's storage.redirect.disable: blob GETs answer 307 to a presigned URL unless disabled.
    disable: bool = False


class StorageSettings(_Section):
    filesystem: FilesystemStorage | None = None
    inmemory: InMemoryStorage | None = None
    s3: S3Storage | None = None
    delete: DeleteSettings = DeleteSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    cache: CacheSettings = CacheSettings()
    redirect: RedirectSettings = RedirectSettings()

    @model_validator(mode="after")
    def _one_driver(self) -> Self:
        named = [name for name in ("filesystem", "inmemory", "s3") if getattr(self, name) is not None]
        if len(named) > 1:
            raise ValueError(f"configure exactly one storage driver, not {' and '.join(named)}")
        return self

    @property
    def driver_name(self) -> Literal["filesystem", "inmemory", "s3"]:
        if self.s3 is not None:
            return "s3"
        return "inmemory" if self.inmemory is not None else "filesystem"


# URL schemes of the supported databases (`postgresql://` and `postgres://` run on psycopg 3).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")


class DatabaseSettings(_Section):
    url: str | None = None  # default: sqlite:///<datadir>/dockyard.db

    @field_validator("url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is not None and value.partition(":")[0].lower() not in DATABASE_SCHEMES:
            raise ValueError(
                f"unsupported database {value.partition(':')[0]!r}: use SQLite (sqlite:///PATH) "
                "or PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
            )
        return value


# redis:// and rediss:// (TLS) as redis-py reads them; Sentinel as
# redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE_NAME[/DB]
# (rediss+sentinel: TLS to the master).
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


class RedisSettings(_Section):
    """Optional: caches' invalidation across nodes and shared login-failure counts."""

    url: str | None = Field(default=None, repr=False)  # may carry a password

    @field_validator("url")
    @classmethod
    def _supported_redis(cls, value: str | None) -> str | None:
        if not value:
            return None
        if "://" not in value or value.partition("://")[0].lower() not in REDIS_SCHEMES:
            raise ValueError(
                "expected redis://HOST:PORT/DB, rediss://... (TLS) or "
                "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE_NAME[/DB]"
            )
        return value


class AccessLogSettings(_Section):
    disabled: bool = False


# registry:2 (logrus) level names that have no exact Python counterpart.
_LEVEL_ALIASES = {"trace": "debug", "fatal": "error", "panic": "error"}


class LogSettings(_Section):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    formatter: Literal["json", "text", "logstash"] = "text"
    accesslog: AccessLogSettings = AccessLogSettings()
    # Static fields added to every log line (registry:2's log.fields), e.g. {"service": "registry"}.
    fields: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("level", mode="before")
    @classmethod
    def _level_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _LEVEL_ALIASES.get(value, value)
        return value

    @field_validator("formatter", mode="before")
    @classmethod
    def _formatter_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class MetricsSettings(_Section):
    """Prometheus metrics (docs/operations.md#metrics). They name every project and its storage use, so
    they are not public by default: on http.addr only system administrators (Basic credentials) and
    holders of `token` (Bearer) read them; with `listen` they move to a port of their own, without auth."""

    enabled: bool = True
    # host:port of a separate listener serving GET /metrics without authentication (bind it to loopback
    # or a private network, as the worker's jobs.metrics_listen); http.addr then has no /metrics.
    listen: str | None = None
    # A secret Prometheus sends as `Authorization: Bearer <token>` to read /metrics on http.addr.
    token: str | None = Field(default=None, repr=False)
    # true: /metrics on http.addr answers anyone (private project names and storage use included).
    public: bool = False

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_addr(value)
        return value

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_METRICS_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_METRICS_TOKEN_LENGTH} characters (openssl rand -hex 24)")
        return value


class TokenAuthSettings(_Section):
    """Docker token auth. dockyard issues the tokens itself, unless `rootcertbundle` is set: then, as
    in registry:2, it only verifies tokens an external issuer signed."""

    realm: str | None = None  # the token endpoint clients are sent to; default: <this server>/token
    service: str = "dockyard"
    issuer: str = "dockyard"
    expiration: str = "5m"
    rootcertbundle: Path | None = None

    _check_expiration = field_validator("expiration")(_positive_duration)


class HtpasswdSettings(_Section):
    """registry:2's auth.htpasswd: basic auth against a bcrypt htpasswd file."""

    realm: str = "basic-realm"
    path: Path


class LDAPSettings(_Section):
    """Search-then-bind against LDAP or Active Directory."""

    url: str  # ldap://host:389 or ldaps://host:636
    starttls: bool = False
    ca_file: Path | None = None
    bind_dn: str | None = None
    bind_password: str | None = Field(default=None, repr=False)
    user_base_dn: str
    user_filter: str = "(uid={username})"  # {username} is escaped before it is substituted
    email_attribute: str = "mail"
    display_name_attribute: str = "cn"
    group_base_dn: str | None = None
    group_filter: str = "(member={user_dn})"
    group_name_attribute: str = "cn"
    admin_groups: list[str] = Field(default_factory=list)  # members are system administrators
    timeout: float = Field(default=5.0, gt=0)


class LoginLimitSettings(_Section):
    """Failed logins allowed within `window` before refusing: from one client address for one account
    (`max_failures`: that address's passwords for it are refused), from one address whatever the
    accounts (`max_failures_per_address`: everything from it is refused), and for one account from
    every address (`max_failures_per_account`: then each address that has failed for it is refused,
    while addresses that have not may still log in). Robot secrets count against the address only.
    Unset, the last two are 3 and 10 times `max_failures`."""

    max_failures: int = Field(default=10, ge=1)
    max_failures_per_address: int | None = Field(default=None, ge=1)
    max_failures_per_account: int | None = Field(default=None, ge=1)
    window: str = "15m"

    _check_window = field_validator("window")(_positive_duration)


class AuthSettings(_Section):
    # dockyard's own accounts and token auth. A registry:2 file without an auth section runs open
    # (enabled: false), as registry:2 does; htpasswd or token sections select those modes instead.
    enabled: bool = True
    token: TokenAuthSettings = TokenAuthSettings()
    htpasswd: HtpasswdSettings | None = None
    ldap: LDAPSettings | None = None
    login_limit: LoginLimitSettings = LoginLimitSettings()
    allow_ips: list[str] = Field(default_factory=list)  # CIDRs allowed to use the registry at all
    management_allow_ips: list[str] = Field(default_factory=list)  # ...and the management API and UI

    @field_validator("allow_ips", "management_allow_ips", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # DOCKYARD_AUTH_ALLOW_IPS=10.0.0.0/8,192.168.1.7 reads as one string.
        return [part for part in re.split(r"[,\s]+", value) if part] if isinstance(value, str) else value

    @field_validator("allow_ips", "management_allow_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)"
                ) from None
        return [entry.strip() for entry in value]


class AuditSettings(_Section):
    retention: str = "2160h"  # 90 days

    _check_retention = field_validator("retention")(_positive_duration)


class JobsSettings(_Section):
    """The background job runner (docs/jobs.md)."""

    run_in_serve: bool = True  # `dockyard serve` runs one job runner per node; else only `dockyard worker`s
    threads: int = Field(default=2, ge=1, le=64)  # jobs one runner runs at once
    history: str = "720h"  # finished jobs and their logs are kept this long
    poll_interval: str = "2s"  # how often a runner looks for due jobs queued by other processes
    lease: str = "60s"  # a job whose worker stopped renewing its lease this long is run again
    # host:port where a standalone `dockyard worker` serves its job metrics; off when unset.
    metrics_listen: str | None = None

    _check_durations = field_validator("history", "poll_interval", "lease")(_positive_duration)

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_addr(value)
        return value


class Settings(_Section):
    version: str | None = None  # "0.1" marks a registry:2 config file
    datadir: Path = Path("data")
    http: HTTPSettings = HTTPSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()
    jobs: JobsSettings = JobsSettings()

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # YAML reads `version: 0.1` as a float.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _metrics_port_of_its_own(self) -> Self:
        listen = self.metrics.listen
        if listen is not None and split_addr(listen)[1] == self.http.bind_port:
            raise ValueError(f"metrics.listen {listen!r} needs a port other than http.addr's")
        return self

    @property
    def is_registry2_config(self) -> bool:
        return self.version is not None and self.version.startswith("0.")

    @property
    def storage_root(self) -> Path:
        fs = self.storage.filesystem
        return fs.rootdirectory if fs and fs.rootdirectory else self.datadir / "storage"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        # In-memory blobs vanish with the process, so their metadata must not outlive it either:
        # `serve` starts this file afresh.
        name = "inmemory.db" if self.storage.driver_name == "inmemory" else "dockyard.db"
        return f"sqlite:///{self.datadir / name}"

    @property
    def ephemeral_database(self) -> Path | None:
        """The DB file `serve` resets at start (the in-memory driver's own), if any."""
        if self.database.url or self.storage.driver_name != "inmemory":
            return None
        return self.datadir / "inmemory.db"
