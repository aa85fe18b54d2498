"""The one typed settings model. Loaded once at startup by `dockyard.config.loader`.

Key names follow registry:2's config.yml where the feature is the same, so its files work.

Each key's `description` (and each section's docstring) is its documentation: `make docs` writes them into
docs/configuration.md, and a unit test fails when that page and this model drift apart. Descriptions are
Markdown, with links relative to docs/.
"""

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

# The sections in modules of their own, importable from here as before.
from dockyard.config.auth_settings import AuthSettings
from dockyard.config.auth_settings import LDAPSettings as LDAPSettings
from dockyard.config.base import Networks, NonNegativeDuration, PositiveDuration, Section, doc, empty_list
from dockyard.config.base import split_addr as split_addr
from dockyard.config.durations import Duration
from dockyard.config.layer_files_settings import LayerFilesSettings
from dockyard.config.limits_settings import LimitsSettings
from dockyard.config.notifications_settings import NotificationsSettings, WebhooksSettings
from dockyard.config.replication_settings import ReplicationSettings
from dockyard.config.storage_settings import StorageSettings


class TLSSettings(Section):
    """Serve HTTPS on `http.addr`: set `certificate` and `key` together, or neither for plain HTTP
    ([tls.md](tls.md))."""

    certificate: Path | None = Field(
        default=None,
        description="PEM server certificate (with its chain). The file must exist at startup.",
    )
    key: Path | None = Field(
        default=None,
        description="PEM private key for `http.tls.certificate`, not encrypted. TLS 1.2 and later are "
        "served.",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("certificate and key must be set together (or neither, for plain HTTP)")
        return self

    @property
    def enabled(self) -> bool:
        return self.certificate is not None


MIN_METRICS_TOKEN_LENGTH = 24  # a guessable scrape token would undo keeping metrics private


class HTTPSettings(Section):
    """The HTTP server: `/v2`, `/token`, `/api/v1`, the health checks and (unless `metrics.listen`)
    `/metrics`, all on one address. Health endpoints, for load balancers and without auth: `GET /healthz`
    answers 200 while the process serves; `GET /readyz` checks the database, storage and (when
    configured) Redis, 200 or 503 with a JSON body per check."""

    addr: str = Field(
        default="0.0.0.0:5000",
        description="Listen address: `host:port`, `:port` (every interface) or `[ipv6]:port`. TCP only.",
        json_schema_extra=doc("host:port"),
    )
    host: str | None = Field(
        default=None,
        description="Public base URL, e.g. `https://registry.example.com`: put in `Location` headers, and "
        "(with `/token`) the token realm of `WWW-Authenticate` unless `auth.token.realm` is set "
        "([auth.md](auth.md#tokens)). Unset: `Location` headers are paths (`/v2/...`), which clients "
        "resolve against the URL they used, and the realm is built from the request's `Host`.",
        json_schema_extra=doc("URL"),
    )
    secret: str | None = Field(
        default=None,
        repr=False,  # never shown in reprs or logs
        description="Shared by every node: encrypts the token signing keys and the registry endpoints' "
        "credentials stored in the database (unset: they are encrypted under a generated "
        "`<datadir>/signing-key-secret`; see [auth.md](auth.md#signing-keys), "
        "[endpoints.md](endpoints.md#secrets-are-write-only-and-sealed-at-rest)), and (when at least 32 "
        "bytes) signs management-API session cookies (else a generated `<datadir>/session-secret` is "
        "used). Upload state lives in the database, so uploads need no secret. Never logged.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Server worker processes. Each serves requests on its own; they share the database "
        "and a cache change feed.",
    )
    tls: TLSSettings = TLSSettings()
    headers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra headers on every response, as in registry:2: `{X-Content-Type-Options: "
        "[nosniff]}`. A single string is taken as a one-item list. Header names have dashes, so "
        'the variable sets the whole map: `DOCKYARD_HTTP_HEADERS=\'{"X-Frame-Options": ["DENY"]}\'`.',
    )
    trusted_proxies: Networks = Field(
        default_factory=empty_list,
        description="Load balancers whose forwarding headers are believed; empty: nobody's, every client "
        "is the connection's peer. A request whose peer is in the list is taken to come from the "
        "rightmost address in `X-Forwarded-For` that is not itself a trusted proxy (`Forwarded: for=` "
        "when there is no `X-Forwarded-For`), with the scheme of `X-Forwarded-Proto` and the host of "
        "`X-Forwarded-Host`: the login limit per address, the audit log, `auth.allow_ips`, the access "
        "log and the token realm all use that client. Headers from other peers are ignored. A variable "
        "takes a comma-separated list: `DOCKYARD_HTTP_TRUSTED_PROXIES=10.0.0.0/8,192.0.2.7`. See "
        "[ha.md](ha.md#client-addresses-behind-the-balancer).",
        json_schema_extra=doc("list of CIDRs"),
    )
    drain_timeout: NonNegativeDuration = Field(
        default=Duration("30s"),
        description="On SIGTERM, `/readyz` answers 503 at once and requests in flight get this long to "
        "finish; then the workers stop (one still busy gets 10 s more before it is killed) and the process "
        "exits 0 (sooner when nothing is in flight). registry:2's "
        "`http.draintimeout` sets it too. A second SIGTERM, or SIGINT, stops at once. See "
        "[ha.md](ha.md#health-checks-and-draining).",
        json_schema_extra=doc("duration"),
    )

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


# URL schemes of the supported databases (`postgresql://` and `postgres://` run on psycopg 3).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")


class DatabaseSettings(Section):
    """The metadata database: the source of truth for everything but blob bytes."""

    url: str | None = Field(
        default=None,
        description="SQLite (`sqlite:///PATH`; an absolute path has four slashes: "
        "`sqlite:////var/lib/dockyard/dockyard.db`) or PostgreSQL "
        "(`postgresql://USER:PASSWORD@HOST:PORT/DATABASE`, on psycopg 3; `postgres://` and "
        "`postgresql+psycopg://` work too). Any other scheme is a config error. Several nodes share one "
        "PostgreSQL ([ha.md](ha.md)). A password in the URL is masked wherever it is shown.",
        json_schema_extra=doc("SQLAlchemy URL", default="`sqlite:///<datadir>/dockyard.db`"),
    )

    flush_commits: bool = Field(
        default=True,
        description="SQLite only: each write transaction flushes the database's WAL to the disk "
        "(`fdatasync`) after it committed and before the request is answered, shared by the commits "
        "that land meanwhile, so an answered push survives a power cut or a kernel crash (all but an "
        "upload session's bookkeeping, which a later flush covers: a lost one makes its client resume "
        "or start the upload again) "
        "([operations.md](operations.md), \"What an acknowledged write survives\"). `false` saves "
        "that flush (about 200 µs of CPU and up to milliseconds of waiting per write); a power cut may "
        "then lose the writes of the last seconds, a crash of dockyard still loses nothing. "
        "PostgreSQL flushes by its own `synchronous_commit`.",
    )

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


class RedisSettings(Section):
    """Optional on one node; required when several nodes share one database ([ha.md](ha.md))."""

    url: str | None = Field(
        default=None,
        repr=False,  # may carry a password
        description="Shared cache invalidation (pub/sub; reads never wait on Redis), revocations (retired "
        "signing keys, deleted tokens and robots, disabled users: everywhere within about a second), "
        "login-failure counts and locks (the hourly audit purge runs once per cluster) across workers "
        "and nodes. `redis://[:PASSWORD@]HOST:PORT/DB`, `rediss://` (TLS), `unix:///path`, Sentinel: "
        "`redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]` (`rediss+sentinel://` for "
        "TLS to the master). If Redis goes away the registry keeps serving, uncached, and resumes "
        "caching when it returns.",
        json_schema_extra=doc("URL"),
    )

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


class AccessLogSettings(Section):
    disabled: bool = Field(default=False, description="Turn off the one-line-per-request access log.")


# registry:2 (logrus) level names that have no exact Python counterpart.
_LEVEL_ALIASES = {"trace": "debug", "fatal": "error", "panic": "error"}


class LogSettings(Section):
    """Logs go to stderr ([operations.md](operations.md#logs))."""

    level: Literal["debug", "info", "warn", "warning", "error"] = Field(
        default="info",
        description="Case-insensitive. `warning` = `warn`; registry:2's `trace` = `debug`, `fatal` and "
        "`panic` = `error`.",
    )
    formatter: Literal["json", "text", "logstash"] = Field(
        default="text", description="Line format: see [operations.md](operations.md#logs)."
    )
    accesslog: AccessLogSettings = AccessLogSettings()
    fields: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Added to every line, e.g. `{service: registry, environment: prod}`. A variable "
        "sets one field with the rest of its name, lower-cased: `DOCKYARD_LOG_FIELDS_SERVICE=registry` "
        "sets `log.fields.service`.",
    )

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


class MetricsSettings(Section):
    """Prometheus metrics at `GET /metrics` (metric names and scrape configs:
    [operations.md](operations.md#metrics)). They name every project, private ones too, and its storage
    use, so they are not public by default. On `http.addr`, `/metrics` answers system administrators
    (Basic credentials: password or personal access token; in htpasswd mode any htpasswd user) and the
    holder of `metrics.token`, and `401` to anyone else. With auth off (`auth.enabled: false`) it is
    open, unless `metrics.token` is set. With `metrics.listen` it moves to a port of its own."""

    enabled: bool = Field(default=True, description="Serve Prometheus metrics at `GET /metrics`.")
    listen: str | None = Field(
        default=None,
        description="Serve `GET /metrics` on a port of its own, without authentication (bind it to "
        "loopback or a private network), instead of on `http.addr`. Must differ from `http.addr`'s "
        "port. E.g. `DOCKYARD_METRICS_LISTEN=127.0.0.1:9101`.",
        json_schema_extra=doc("host:port"),
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="A secret, at least 24 characters (`openssl rand -hex 24`), that reads `/metrics` on "
        "`http.addr` as `Authorization: Bearer <token>` (Prometheus' `authorization.credentials`). "
        "Never logged.",
    )
    public: bool = Field(
        default=False,
        description="`true`: `/metrics` on `http.addr` answers anyone, private project names and storage "
        "use included.",
    )

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


class AuditSettings(Section):
    """The audit log of logins, pushes, deletes and changes, with hourly counts of pulls
    ([auth.md](auth.md#audit-log))."""

    retention: PositiveDuration = Field(
        default=Duration("2160h"),  # 90 days
        description="How long audit events (and hourly pull counts) are kept.",
        json_schema_extra=doc("duration"),
    )
    pulls: Literal["counted", "off"] = Field(
        default="counted",
        description="Manifest pulls in the audit log: `counted`, one row per (hour, manifest, user or "
        "robot) with how many pulls it made, added in batches every few seconds (a killed process loses "
        "at most its last 5 s of counts); `off`, not audited. Pushes, deletes, logins and denials are "
        "always recorded one by one ([auth.md](auth.md#audit-log)).",
    )


class JobsSettings(Section):
    """The background job runner ([jobs.md](jobs.md)): garbage collection, retention, upload purging,
    audit purging."""

    run_in_serve: bool = Field(
        default=True,
        description="`serve` runs a background job runner on this node; else only `dockyard worker` does.",
    )
    threads: int = Field(default=2, ge=1, le=64, description="Jobs one runner runs at once.")
    history: PositiveDuration = Field(
        default=Duration("720h"),
        description="How long finished jobs and their logs are kept.",
        json_schema_extra=doc("duration"),
    )
    poll_interval: PositiveDuration = Field(
        default=Duration("2s"),
        description=(
            "How often a runner looks for due jobs by itself; jobs queued through the API or by a "
            "push start at once (the change feed tells it), delayed jobs and schedules when due."
        ),
        json_schema_extra=doc("duration"),
    )
    lease: PositiveDuration = Field(
        default=Duration("60s"),
        description="A job whose runner stopped renewing its lease for this long is run again elsewhere.",
        json_schema_extra=doc("duration"),
    )
    metrics_listen: str | None = Field(
        default=None,
        description="Where a standalone `dockyard worker` serves its job metrics (`GET /metrics`, "
        "[jobs.md](jobs.md#metrics)); off when unset. The runner `serve` starts ignores it.",
        json_schema_extra=doc("host:port"),
    )

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_addr(value)
        return value


class UpstreamSettings(Section):
    """How the server talks to remote registries (registry endpoints, [endpoints.md](endpoints.md)): which
    addresses it may fetch from, and how long it waits."""

    allowed_networks: Networks = Field(
        default_factory=empty_list,
        description="Networks an endpoint (or a redirect, or a token realm) may resolve to besides public "
        "addresses. By default the server refuses to fetch from loopback, link-local (cloud metadata at "
        "169.254.169.254), private, shared and unspecified addresses, checked on the resolved addresses "
        "at connect time, so a URL cannot make the server reach its own network (SSRF). A registry on "
        "your LAN needs its network here: `[10.20.0.0/16]`. A variable takes a comma-separated list: "
        "`DOCKYARD_UPSTREAM_ALLOWED_NETWORKS=10.20.0.0/16,fd00:1::/64`.",
        json_schema_extra=doc("list of CIDRs"),
    )
    connect_timeout: PositiveDuration = Field(
        default=Duration("10s"),
        description="How long opening a connection to an upstream may take.",
        json_schema_extra=doc("duration"),
    )
    read_timeout: PositiveDuration = Field(
        default=Duration("30s"),
        description="How long an upstream may be silent while it sends (a stalled blob download fails).",
        json_schema_extra=doc("duration"),
    )
    total_timeout: PositiveDuration = Field(
        default=Duration("60s"),
        description="How long one request may take in all: a manifest, a tag list, a HEAD, a token, and a "
        "blob until its first byte (the blob's body is bounded by `read_timeout` per read).",
        json_schema_extra=doc("duration"),
    )


class ProxySettings(Section):
    """Mirror modes of the pull-through cache ([proxy.md](proxy.md#mirror-mode)), for clients that cannot
    put a proxy project's name in front of an image's: containerd's `hosts.toml` mirrors, docker's
    `registry-mirrors`, and registry:2's `proxy:` section, which makes the whole registry one mirror."""

    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="Upstream host -> proxy project: a request carrying containerd's `?ns=<host>` (a "
        "`hosts.toml` mirror) for a host listed here is served by that project: "
        "`/v2/library/alpine/manifests/3.20?ns=docker.io` with `{docker.io: hub}` is `hub/library/alpine`. "
        "A request with an `ns` not listed, or none, is served as its name says.",
        json_schema_extra=doc("map of host to project"),
    )
    default_namespace: str | None = Field(
        default=None,
        description="A key of `namespaces` (normally `docker.io`) whose project also serves pulls that "
        "carry no `ns` and whose first name component is no project: docker's `registry-mirrors` asks for "
        "`/v2/library/alpine/...` as it would ask Docker Hub. Pushes are never redirected.",
        json_schema_extra=doc("host"),
    )
    remoteurl: str | None = Field(
        default=None,
        description="registry:2's pull-through cache: the registry this whole server mirrors (every "
        "repository name, as is; pushes are refused). Its address is checked like an endpoint's "
        "(`upstream.allowed_networks`). Cannot be combined with `namespaces`.",
        json_schema_extra=doc("URL"),
    )
    username: str | None = Field(default=None, description="The user for `remoteurl`, if it needs one.")
    password: str | None = Field(
        default=None, repr=False, description="Its password (or access token). Never logged."
    )
    tag_ttl: NonNegativeDuration = Field(
        default=Duration("0s"),
        description="How long a tag pulled through `remoteurl` is served before the upstream is asked again "
        "(a `HEAD`, which Docker Hub does not count as a pull). `0s`, the default, asks on every pull by "
        "tag, as registry:2 does; a digest, once cached, is never asked for again. registry:2's own "
        "`proxy.ttl` (when cached content expires) is accepted with a warning: dockyard keeps cached "
        "content until retention or GC removes it.",
        json_schema_extra=doc("duration"),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_namespace is not None and self.default_namespace not in self.namespaces:
            name = self.default_namespace
            raise ValueError(f"proxy.default_namespace {name!r} is not a key of proxy.namespaces")
        if self.remoteurl and self.namespaces:
            raise ValueError("proxy.remoteurl (the whole registry is one mirror) excludes proxy.namespaces")
        if self.password and not self.username:
            raise ValueError("proxy.password needs proxy.username")
        return self


class ScannerAPISettings(Section):
    """dockyard's scanner served through the Harbor pluggable scanner API v1.1
    ([security.md](security.md#the-harbor-pluggable-scanner-api)), at `/scanner/api/v1` on `http.addr`,
    so a Harbor (or another dockyard) can use it as its scanner. It scans this registry's own artifacts,
    from its storage; another registry's only when `allowed_registries` names it, so the API cannot make
    the server fetch URLs."""

    enabled: bool = Field(
        default=False,
        description="Serve `/scanner/api/v1/{metadata,scan,scan/{id}/report}`. Needs `token` or "
        "`username` and `password`: the adapter API is never open.",
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="The bearer token a caller sends (`Authorization: Bearer TOKEN`; what Harbor's "
        "scanner registration calls a bearer credential). Never logged.",
    )
    username: str | None = Field(
        default=None, description="With `password`: Basic credentials a caller may send instead."
    )
    password: str | None = Field(default=None, repr=False, description="Its password. Never logged.")
    allowed_registries: list[str] = Field(
        default_factory=empty_list,
        description="Registries other than this one a scan request may name (`registry.url`, as "
        "`https://harbor.example.com`): the artifact is then pulled from there with the request's "
        "authorization, through the same address guard as endpoints (`upstream.allowed_networks`: a "
        "registry on a private network needs its network there too). Empty, the default: a request naming "
        "any other URL is refused.",
        json_schema_extra=doc("list of URLs"),
    )

    @field_validator("allowed_registries")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
                raise ValueError(f"scanner_api.allowed_registries: {url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _authenticated(self) -> Self:
        if self.enabled and not self.token and not (self.username and self.password):
            raise ValueError("scanner_api.enabled needs scanner_api.token, or username and password")
        if bool(self.username) != bool(self.password):
            raise ValueError("scanner_api.username and scanner_api.password go together")
        return self


class Settings(Section):
    version: str | None = Field(
        default=None,
        description="`0.1` (any `0.x`) marks a registry:2 file: see "
        "[compatibility](#registry2-configyml-compatibility). Not needed in dockyard's own format.",
    )
    datadir: Path = Field(
        default=Path("data"),
        description="Where dockyard keeps its state: the SQLite database, the blobs (unless "
        "`storage.filesystem.rootdirectory` says otherwise), generated secrets and runtime files. Created "
        "`0700` with files `0600`; one other users may read is made private at start, or refused if it "
        "cannot be. Layout: [operations.md](operations.md#the-data-directory).",
    )
    http: HTTPSettings = HTTPSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()
    jobs: JobsSettings = JobsSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    proxy: ProxySettings = ProxySettings()
    replication: ReplicationSettings = ReplicationSettings()
    limits: LimitsSettings = LimitsSettings()
    notifications: NotificationsSettings = NotificationsSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    scanner_api: ScannerAPISettings = ScannerAPISettings()
    layer_files: LayerFilesSettings = LayerFilesSettings()

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # YAML reads `version: 0.1` as a float.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _oidc_redirect_from_config(self) -> Self:
        # The provider's redirect URI is never built from a request's Host: it must come from here.
        if self.auth.oidc is not None and not self.auth.oidc.redirect_uri and not self.http.host:
            raise ValueError(
                "auth.oidc needs auth.oidc.redirect_uri or http.host (the provider's redirect URI)"
            )
        return self

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
