from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.cli.cert import make_certificates
from dockyard.config.loader import config_path_from_env, hand_down, handed_down, load_config, load_settings
from dockyard.errors import ConfigError

# Debian's docker-registry package ships this file (/etc/docker/registry/config.yml).
DEBIAN_REGISTRY2_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    def write(content: str | dict[str, Any]) -> Path:
        path = tmp_path / "config.yml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write


def config_error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return str(caught.value)


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(None, {})
    assert settings.http.addr == "0.0.0.0:5000"
    assert settings.storage.driver_name == "filesystem"
    assert settings.storage.delete.enabled is True  # dockyard's own default
    assert settings.storage_root == Path("data/storage")


def test_registry2_htpasswd_section_selects_htpasswd_auth(write_config: Any) -> None:
    """Debian's config asks for htpasswd auth: it is honoured, never dropped (that would run open)."""
    loaded = load_config(write_config(DEBIAN_REGISTRY2_CONFIG), {})
    assert loaded.settings.auth.htpasswd is not None
    assert loaded.settings.auth.htpasswd.path == Path("/etc/docker/registry")
    assert [w.split(":")[0] for w in loaded.warnings] == ["health.storagedriver"]


def test_registry2_token_section_needs_its_root_certificates(write_config: Any) -> None:
    config = "version: 0.1\nauth:\n  token:\n    realm: https://auth.example/token\n    service: registry\n"
    with pytest.raises(ConfigError, match=r"^auth\.token: registry:2 token auth needs rootcertbundle"):
        load_config(write_config(config), {})


def test_registry2_file_without_auth_runs_open_with_a_warning(write_config: Any) -> None:
    loaded = load_config(write_config("version: 0.1\nstorage:\n  inmemory:\n"), {})
    assert loaded.settings.auth.enabled is False
    assert any(w.startswith("auth: no auth section") for w in loaded.warnings)


def test_dockyard_format_has_auth_on_by_default(write_config: Any) -> None:
    assert load_settings(write_config("http:\n  addr: 127.0.0.1:5001\n"), {}).auth.enabled is True


def test_debian_registry2_config_loads_with_warnings_for_sections_not_applied(write_config: Any) -> None:
    without_auth = re.sub(r"\nauth:\n(?:  .*\n)+", "\n", DEBIAN_REGISTRY2_CONFIG)
    assert "htpasswd" not in without_auth
    loaded = load_config(write_config(without_auth), {})
    settings = loaded.settings
    assert settings.is_registry2_config
    assert settings.http.bind_host == "0.0.0.0"
    assert settings.http.bind_port == 5000
    assert settings.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert settings.storage_root == Path("/var/lib/docker-registry")
    assert settings.storage.delete.enabled is True
    assert settings.storage.cache.blobdescriptor == "inmemory"
    assert settings.log.fields == {"service": "registry"}
    assert [w.split(":")[0] for w in loaded.warnings] == ["health.storagedriver", "auth"]


def test_registry2_file_keeps_registry2_delete_default(write_config: Any) -> None:
    path = write_config("version: 0.1\nstorage:\n  inmemory:\n")
    settings = load_settings(path, {})
    assert settings.storage.driver_name == "inmemory"
    assert settings.storage.delete.enabled is False
    # ...while an environment variable still turns it on
    assert load_settings(path, {"REGISTRY_STORAGE_DELETE_ENABLED": "true"}).storage.delete.enabled is True


def test_full_registry2_maintenance_and_tls(write_config: Any, tmp_path: Path) -> None:
    paths = make_certificates("registry.example", tmp_path)
    cert, key = paths.server_cert, paths.server_key
    path = write_config(
        {
            "version": 0.1,
            "log": {"level": "debug", "formatter": "json", "accesslog": {"disabled": True}},
            "http": {
                "addr": "127.0.0.1:5443",
                "secret": "s3cret",
                "tls": {"certificate": str(cert), "key": str(key), "minimumtls": "tls1.2"},
                "net": "tcp",
                "relativeurls": False,
            },
            "storage": {
                "filesystem": {"rootdirectory": str(tmp_path / "store")},
                "maintenance": {
                    "uploadpurging": {"enabled": True, "age": "168h", "interval": "1h30m", "dryrun": False},
                    "readonly": {"enabled": True},
                },
            },
            "notifications": None,  # written, but empty
        }
    )
    loaded = load_config(path, {})
    settings = loaded.settings
    assert settings.http.tls.enabled
    assert settings.http.tls.certificate == cert
    assert settings.storage.maintenance.uploadpurging.age.seconds == 168 * 3600
    assert settings.storage.maintenance.uploadpurging.interval.seconds == 5400
    assert settings.storage.maintenance.readonly.enabled is True
    assert settings.log.accesslog.disabled is True
    assert {w.split(":")[0] for w in loaded.warnings} == {"auth"}
    assert "s3cret" not in repr(settings)


def test_environment_overrides_file_and_dockyard_wins_over_registry(write_config: Any) -> None:
    path = write_config({"http": {"addr": ":5000"}, "storage": {"delete": {"enabled": True}}})
    settings = load_settings(
        path,
        {
            "REGISTRY_HTTP_ADDR": "127.0.0.1:6000",
            "DOCKYARD_HTTP_ADDR": "127.0.0.1:7000",
            "DOCKYARD_STORAGE_DELETE_ENABLED": "false",
            "DOCKYARD_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "2h",
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN": "true",
            "DOCKYARD_DATABASE_URL": "sqlite:////srv/dockyard/meta.db",
            "DOCKYARD_DATADIR": "/srv/dockyard",
            "REGISTRY_HTTP_SECRET": "0123",  # stays text, not YAML's octal 83
            "REGISTRY_LOG_LEVEL": "warn",
            "REGISTRY_LOG_FIELDS_ENVIRONMENT": "prod",
            "DOCKYARD_HTTP_WORKERS": "4",
        },
    )
    assert settings.http.addr == "127.0.0.1:7000"
    assert settings.storage.delete.enabled is False
    assert settings.storage.maintenance.uploadpurging.age.seconds == 7200
    assert settings.storage.maintenance.uploadpurging.dryrun is True
    assert settings.database_url == "sqlite:////srv/dockyard/meta.db"
    assert settings.datadir == Path("/srv/dockyard")
    assert settings.http.secret == "0123"
    assert settings.log.level == "warn"
    assert settings.log.fields == {"environment": "prod"}
    assert settings.http.workers == 4


def test_registry_tls_and_rootdirectory_variables(tmp_path: Path) -> None:
    paths = make_certificates("registry.example", tmp_path)
    cert, key = paths.server_cert, paths.server_key
    settings = load_settings(
        None,
        {
            "REGISTRY_HTTP_TLS_CERTIFICATE": str(cert),
            "REGISTRY_HTTP_TLS_KEY": str(key),
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "blobs"),
        },
    )
    assert (settings.http.tls.certificate, settings.http.tls.key) == (cert, key)
    assert settings.storage_root == tmp_path / "blobs"


def test_registry_storage_variable_selects_the_driver(write_config: Any) -> None:
    path = write_config({"storage": {"filesystem": {"rootdirectory": "/x"}}})
    assert load_settings(path, {"REGISTRY_STORAGE": "inmemory"}).storage.driver_name == "inmemory"
    assert load_settings(None, {"DOCKYARD_STORAGE": "filesystem"}).storage.driver_name == "filesystem"
    # S3 is a driver now: selecting it without its bucket names the missing key.
    assert "storage.s3.bucket" in config_error(None, {"REGISTRY_STORAGE": "s3"})
    s3 = load_settings(None, {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b"}).storage
    assert s3.driver_name == "s3" and s3.s3 is not None and s3.s3.bucket == "b"
    assert "'azure' is not supported" in config_error(None, {"REGISTRY_STORAGE": "azure"})


def test_registry_variables_set_registry2_keys_only() -> None:
    loaded = load_config(
        None,
        {
            "REGISTRY_DATADIR": "/nope",
            "REGISTRY_AUTH_LDAP_URL": "ldap://nope",  # dockyard's own key: not through REGISTRY_*
            "REGISTRY_AUTH_HTPASSWD_PATH": "/x",
            "REGISTRY_SERVICE_HOST": "10.0.0.1",  # a Kubernetes service named "registry"
            "REGISTRY_PORT_5000_TCP": "tcp://10.0.0.1:5000",
            "DOCKYARD_NO_SUCH_THING": "1",
            "DOCKYARD_CONFIG": "/ignored.yml",
        },
    )
    assert loaded.settings.datadir == Path("data")
    assert loaded.settings.auth.ldap is None
    assert loaded.settings.auth.htpasswd is not None and loaded.settings.auth.htpasswd.path == Path("/x")
    assert sorted(w.split(":")[0] for w in loaded.warnings) == [
        "DOCKYARD_NO_SUCH_THING",
        "REGISTRY_AUTH_LDAP_URL",
        "REGISTRY_DATADIR",
        "REGISTRY_PORT_5000_TCP",
        "REGISTRY_SERVICE_HOST",
    ]


def test_loglevel_is_applied_as_registry2_does() -> None:
    assert load_settings(None, {"REGISTRY_LOGLEVEL": "debug"}).log.level == "debug"
    both = {"REGISTRY_LOGLEVEL": "debug", "REGISTRY_LOG_LEVEL": "error"}
    assert load_settings(None, both).log.level == "error"
    assert load_settings(None, {"REGISTRY_HTTP_DRAINTIMEOUT": "45s"}).http.drain_timeout == "45s"


def test_the_largest_upload_defaults_to_16_gib_and_takes_sizes(write_config: Any) -> None:
    assert load_settings(None, {}).storage.uploads.max_size_bytes == 16 * 1024**3
    purging = load_settings(None, {}).storage.maintenance.uploadpurging
    assert (purging.age.seconds, purging.interval.seconds) == (24 * 3600, 6 * 3600)
    settings = load_settings(write_config({"storage": {"uploads": {"max_size": "500MB"}}}), {})
    assert settings.storage.uploads.max_size_bytes == 500 * 1000**2
    environ = {"DOCKYARD_STORAGE_UPLOADS_MAX_SIZE": "2.5GiB"}
    assert load_settings(None, environ).storage.uploads.max_size_bytes == int(2.5 * 1024**3)
    in_bytes = load_settings(None, {"DOCKYARD_STORAGE_UPLOADS_MAX_SIZE": "1234"})
    assert in_bytes.storage.uploads.max_size_bytes == 1234


def test_invalid_value_names_the_key_path(write_config: Any) -> None:
    message = config_error(write_config({"storage": {"delete": {"enabled": "maybe"}}}))
    assert message == "storage.delete.enabled: Input should be a valid boolean, unable to interpret input"


def test_invalid_environment_value_names_the_variable() -> None:
    message = config_error(None, {"DOCKYARD_STORAGE_DELETE_ENABLED": "maybe"})
    assert message.startswith("storage.delete.enabled (from DOCKYARD_STORAGE_DELETE_ENABLED): ")


def test_unknown_keys_are_errors_with_the_valid_choices(write_config: Any) -> None:
    message = config_error(write_config({"storage": {"filesystem": {"rootdir": "/x"}}, "htp": {}}))
    assert "storage.filesystem.rootdir: unknown key (expected one of: rootdirectory)" in message
    assert "htp: unknown key" in message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"http": {"addr": "5000"}}, "http.addr: expected host:port or :port"),
        ({"http": {"addr": "http://x:5000"}}, "http.addr: expected host:port or :port"),
        ({"http": {"addr": ":70000"}}, "http.addr: port must be between 1 and 65535"),
        ({"jobs": {"metrics_listen": ":70000"}}, "jobs.metrics_listen: port must be between 1 and 65535"),
        ({"http": {"tls": {"certificate": "/c.pem"}}}, "http.tls: certificate and key must be set together"),
        (
            {"http": {"tls": {"certificate": "/no/c.pem", "key": "/no/k.pem"}}},
            "http.tls.certificate: file not found",
        ),
        (
            {"storage": {"maintenance": {"uploadpurging": {"age": "1d"}}}},
            "storage.maintenance.uploadpurging.age: invalid duration '1d'",
        ),
        (
            {"storage": {"maintenance": {"uploadpurging": {"interval": "0"}}}},
            "storage.maintenance.uploadpurging.interval: must be a positive duration",
        ),
        (
            {"storage": {"uploads": {"max_size": "16 GiBs"}}},
            "storage.uploads.max_size: invalid size '16 GiBs'",
        ),
        ({"storage": {"uploads": {"max_size": 0}}}, "storage.uploads.max_size: must be a positive size"),
        ({"storage": {"inmemory": {}, "filesystem": {}}}, "storage: configure exactly one storage driver"),
        ({"storage": {"gcs": {"bucket": "b"}}}, "storage.gcs: storage driver 'gcs' is not supported"),
        ({"log": {"level": "loud"}}, "log.level: Input should be"),
        ({"http": {"workers": 0}}, "http.workers: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_reported_by_key(
    write_config: Any, config: dict[str, Any], expected: str
) -> None:
    assert expected in config_error(write_config(config))


def test_unreadable_or_malformed_files(tmp_path: Path, write_config: Any) -> None:
    assert "cannot read" in config_error(tmp_path / "missing.yml")
    assert "not valid YAML" in config_error(write_config("http: [unclosed"))
    assert "must be a YAML mapping" in config_error(write_config("- a\n- b\n"))


def test_ipv6_and_named_hosts() -> None:
    assert load_settings(None, {"DOCKYARD_HTTP_ADDR": "[::1]:5000"}).http.bind_host == "::1"
    assert load_settings(None, {"DOCKYARD_HTTP_ADDR": "localhost:5001"}).http.bind_port == 5001


def test_config_path_from_environment() -> None:
    assert config_path_from_env({"REGISTRY_CONFIGURATION_PATH": "/etc/r.yml"}) == Path("/etc/r.yml")
    both = {"DOCKYARD_CONFIG": "/a.yml", "REGISTRY_CONFIGURATION_PATH": "/b.yml"}
    assert config_path_from_env(both) == Path("/a.yml")
    assert config_path_from_env({}) is None


def test_tls_key_that_cannot_be_used_is_a_config_error(tmp_path: Path) -> None:
    paths = make_certificates("registry.example", tmp_path)
    other = make_certificates("other.example", tmp_path / "other")
    with pytest.raises(ConfigError, match=r"^http\.tls: cannot use certificate"):
        load_settings(
            None,
            {
                "DOCKYARD_HTTP_TLS_CERTIFICATE": str(paths.server_cert),
                "DOCKYARD_HTTP_TLS_KEY": str(other.server_key),
            },
        )


def test_a_section_left_empty_reads_as_empty(write_config: Any) -> None:
    settings = load_settings(write_config("http:\n  addr: 127.0.0.1:5001\n  tls:\nlog:\n"), {})
    assert settings.http.tls.certificate is None
    assert settings.http.bind_port == 5001


def test_databases_other_than_sqlite_and_postgresql_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"database\.url .*unsupported database 'mysql'.*PostgreSQL"):
        load_settings(None, {"DOCKYARD_DATABASE_URL": "mysql://u@127.0.0.1/db"})


@pytest.mark.parametrize(
    "url", ["postgresql://u@127.0.0.1:5432/db", "postgresql+psycopg://u@127.0.0.1/db", "postgres://u@h/db"]
)
def test_postgresql_urls_are_accepted(url: str) -> None:
    assert load_settings(None, {"DOCKYARD_DATABASE_URL": url}).database_url == url


# Every section away from its defaults, in the forms a file may write them.
EVERY_SECTION = {
    "datadir": "relative/data",
    "http": {
        "addr": "[::1]:5443",
        "host": "https://registry.example.com",
        "secret": "s" * 40,
        "workers": 3,
        "headers": {"X-Content-Type-Options": "nosniff", "X-Two": ["a", "b"]},
        "trusted_proxies": "10.0.0.0/8, 192.168.1.1",
        "drain_timeout": "1m30s",
    },
    "storage": {
        "s3": {
            "bucket": "b",
            "region": "eu-west-1",
            "regionendpoint": "http://127.0.0.1:8333",
            "accesskey": "ak",
            "secretkey": "sk",
            "rootdirectory": "/r",
            "secure": False,
            "chunksize": 10485760,
            "forcepathstyle": True,
        },
        "delete": {"enabled": False},
        "maintenance": {"uploadpurging": {"age": "72h", "interval": "12h", "dryrun": True}},
        "uploads": {"max_size": "2GiB"},
        "cache": {"memory": "64MiB"},
        "redirect": {"disable": True},
    },
    "database": {"url": "postgresql://dockyard:pw@db/dockyard"},
    "redis": {"url": "redis://:pw@redis:6379/1"},
    "log": {"level": "debug", "formatter": "json", "fields": {"service": "r", "n": 1, "f": 1.5, "b": True}},
    "metrics": {"listen": "127.0.0.1:9100", "token": "t" * 30, "public": True},
    "auth": {
        "token": {"realm": "https://r/token", "service": "svc", "issuer": "iss", "expiration": "15m"},
        "ldap": {"url": "ldaps://ldap", "user_base_dn": "ou=people,dc=x", "admin_groups": ["admins"]},
        "login_limit": {"max_failures": 5, "max_failures_per_address": 50, "window": "10m"},
        "allow_ips": ["10.0.0.0/8"],
    },
    "audit": {"retention": "24h"},
    "jobs": {"run_in_serve": False, "threads": 4, "history": "48h", "metrics_listen": "127.0.0.1:9102"},
}


@pytest.mark.parametrize("config", [EVERY_SECTION, yaml.safe_load(DEBIAN_REGISTRY2_CONFIG), {}])
def test_settings_handed_down_are_the_settings_validated(tmp_path: Path, config: dict[str, Any]) -> None:
    """What serve hands its children (config.loader.hand_down) is what it validated, field for field,
    without the file: they read none."""
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path, {})
    environ: dict[str, str] = {}
    hand_down(settings, environ)
    path.unlink()
    assert handed_down(environ) == settings
    assert handed_down({}) is None
