"""registry:2's configuration keys that dockyard does not model: each is honoured, or refused.

A registry:2 user brings a `config.yml` and `REGISTRY_*` variables. Each key of theirs is applied
(the settings model has it: log, http, storage, auth.htpasswd, auth.token, see loader.py), or it is
one of these:

- HONOURED: accepted only with the value dockyard already behaves by (`http.net: tcp`,
  `auth.token.autoredirect: false`); another value is refused.
- TUNING: performance knobs of registry:2's own implementation, whose job dockyard does its own way;
  ignoring them cannot open access, lose data or events, or change what a client gets. Accepted with
  a warning.
- REFUSED: everything else registry:2 has. Running without it would change what the registry does
  (authentication, TLS policy, ...), so start-up stops with a
  message naming the key, or the variable that set it.

A `REGISTRY_*` variable is read as registry:2 reads it: `REGISTRY_AUTH=htpasswd` selects that auth
type (as `REGISTRY_STORAGE=s3` selects a driver), `REGISTRY_AUTH_HTPASSWD_PATH` sets
`auth.htpasswd.path`. Variables naming nothing registry:2 has (e.g. a Kubernetes service's
`REGISTRY_SERVICE_HOST`) are ignored with a warning, as registry:2 ignores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.config.storage_settings import DRIVER_NAMES
from dockyard.errors import ConfigError

KeyPath = tuple[str, ...]

# registry:2's top-level keys (docs/content/about/configuration.md of distribution).
SECTIONS = frozenset(
    {"version", "log", "loglevel", "storage", "auth", "middleware", "reporting", "http", "notifications",
     "redis", "health", "proxy", "compatibility", "validation", "policy", "catalog"}
)  # fmt: skip
# Sections dockyard does not model at all: a variable under them always means something to registry:2.
FOREIGN_SECTIONS = frozenset(
    {"middleware", "reporting", "health", "compatibility", "validation", "policy", "catalog"}
)  # fmt: skip
# The auth keys registry:2 has that dockyard applies (REGISTRY_AUTH_* may set these, not dockyard's own).
APPLIED_AUTH_KEYS = frozenset(
    {("auth", "htpasswd", "realm"), ("auth", "htpasswd", "path"), ("auth", "token", "realm"),
     ("auth", "token", "service"), ("auth", "token", "issuer"), ("auth", "token", "rootcertbundle"),
     ("auth", "token", "autoredirect")}
)  # fmt: skip
# registry:2's pull-through cache keys, applied (proxy.md#registry2-proxy-mode); REGISTRY_PROXY_* sets them.
APPLIED_PROXY_KEYS = frozenset(
    {("proxy", "remoteurl"), ("proxy", "username"), ("proxy", "password")}
)
AUTH_TYPES = ("htpasswd", "token", "silly")
# registry:2's keys the settings model has, with registry:2's meaning (a section: all of its keys; a
# renamed one, loader.RENAMED, under its new name), besides `version`. Applied from the file and from
# REGISTRY_* variables. The configuration reference lists them from here (`make docs`), and a test checks
# that each names a key dockyard has and that its REGISTRY_* variable sets it.
APPLIED: tuple[KeyPath, ...] = (
    ("loglevel",),
    ("log", "level"), ("log", "formatter"), ("log", "fields"), ("log", "accesslog", "disabled"),
    ("http", "addr"), ("http", "host"), ("http", "secret"), ("http", "headers"), ("http", "draintimeout"),
    ("http", "tls", "certificate"), ("http", "tls", "key"),
    ("storage", "filesystem"), ("storage", "inmemory"), ("storage", "s3"), ("storage", "delete", "enabled"),
    ("storage", "redirect", "disable"), ("storage", "maintenance", "uploadpurging"),
    ("storage", "maintenance", "readonly", "enabled"), ("storage", "cache", "blobdescriptor"),
    ("auth", "htpasswd"), ("auth", "token", "realm"), ("auth", "token", "service"),
    ("auth", "token", "issuer"), ("auth", "token", "rootcertbundle"),
    ("notifications", "endpoints"),
    ("proxy", "remoteurl"), ("proxy", "username"), ("proxy", "password"),
)  # fmt: skip

_NO_TLS_SETTINGS = "dockyard's server has TLS 1.2+ with its own cipher suites; terminate TLS in front of it"
# registry:2 used Redis as a blob-descriptor cache only; dockyard's shared Redis is another thing.
_REDIS = "registry:2's Redis cache; dockyard's Redis, shared by workers and nodes, is redis.url"

_REDIS_KEYS = (
    "addr", "addrs", "password", "username", "db", "dialtimeout", "readtimeout", "writetimeout", "pool",
    "maxidleconns", "poolsize", "connmaxidletime", "tls", "sentinel", "mastername",
)  # fmt: skip

# key path -> (the values dockyard behaves by, what it does)
HONOURED: dict[KeyPath, tuple[tuple[Any, ...], str]] = {
    ("http", "net"): (("tcp", ""), "dockyard listens on TCP only"),
    ("http", "prefix"): (("", "/"), "dockyard serves /v2 at the root path; a proxy may strip a prefix"),
    ("http", "relativeurls"): ((False,), "Location headers are absolute (http.host or the request's Host)"),
    ("http", "tls", "minimumtls"): (("tls1.0", "tls1.1", "tls1.2"), "dockyard's floor is TLS 1.2"),
    ("auth", "token", "autoredirect"): ((False,), "set auth.token.realm to the token issuer's URL"),
    ("notifications", "events", "includereferences"): ((False,), "events list no references"),
}
TUNING: dict[KeyPath, str] = {
    ("storage", "cache", "blobdescriptorsize"): "dockyard sizes its own caches",
    ("storage", "filesystem", "maxthreads"): "dockyard's filesystem driver needs no thread limit",
    ("storage", "tag"): "dockyard reads tags from its database",
    ("log", "reportcaller"): "log lines do not name a Go caller",
    ("http", "http2"): "HTTP/2 is the server's own setting",
    ("http", "h2c"): "HTTP/2 is the server's own setting",
    ("health", "storagedriver"): "dockyard checks its storage and database itself (GET /readyz)",
    ("catalog",): "dockyard pages /v2/_catalog its own way",
    # registry:2 deletes cached content this long after it was fetched (and fetches it again when asked).
    ("proxy", "ttl"): "cached content is kept until retention or GC removes it; proxy.tag_ttl is how long "
    "a tag is served without asking upstream",
    **{("redis", key): _REDIS for key in _REDIS_KEYS},
}
REFUSED: dict[KeyPath, str] = {
    ("auth", "silly"): "silly authentication (any Authorization header passes) is not supported",
    ("auth", "token", "autoredirectpath"): "set auth.token.realm to the token issuer's URL",
    ("auth", "token", "jwks"): "only certificates in auth.token.rootcertbundle are trusted",
    ("auth", "token", "signingalgorithms"): "the algorithms are those of the rootcertbundle's keys",
    ("log", "hooks"): "log hooks (mail on errors) are not supported",
    ("http", "debug"): "no debug server; metrics are at /metrics on http.addr, or on metrics.listen",
    ("http", "tls", "letsencrypt"): "get certificates outside dockyard (`dockyard cert` makes a private CA)",
    ("http", "tls", "clientcas"): "client certificate authentication is not available in this version",
    ("http", "tls", "clientauth"): "client certificate authentication is not available in this version",
    ("http", "tls", "ciphersuites"): _NO_TLS_SETTINGS,
    ("middleware",): "registry:2 middleware (e.g. cloudfront, redirect) is not supported",
    ("reporting",): "error reporting services (bugsnag, newrelic) are not supported",
    ("health", "file"): "custom health checks are not supported (GET /readyz checks storage and database)",
    ("health", "http"): "custom health checks are not supported (GET /readyz checks storage and database)",
    ("health", "tcp"): "custom health checks are not supported (GET /readyz checks storage and database)",
    ("proxy", "exec"): "credential helpers are not run; set proxy.username and proxy.password",
    ("compatibility",): "schema1 manifests are not supported",
    ("validation",): "dockyard validates manifests its own way",
    ("policy",): "repository class policies are not supported",
}


def is_registry2_key(key_path: KeyPath) -> bool:
    """Whether registry:2 reads `key_path` although dockyard's settings model has no such key."""
    if not key_path or key_path[0] not in SECTIONS:
        return False
    if key_path[0] in FOREIGN_SECTIONS:
        return True
    if key_path[0] == "storage" and len(key_path) >= 3 and key_path[1] in DRIVER_NAMES:
        return True  # a driver parameter (s3 `encrypt`, `keyid`, ...): ignoring one can be a surprise
    tables = (*HONOURED, *TUNING, *REFUSED)
    return any(key_path[: len(known)] == known for known in tables)


def select_auth(data: dict[str, Any], variable: str, auth_type: str) -> str:
    """`REGISTRY_AUTH=htpasswd` (or token): that auth type, with parameters from the file or from
    REGISTRY_AUTH_<TYPE>_* variables, as registry:2 reads a scalar for its one-entry auth map.
    Returns the type chosen."""
    chosen = auth_type.strip().lower()
    if chosen == "silly":
        raise ConfigError(f"{variable}: not supported: {REFUSED[('auth', 'silly')]}")
    if chosen not in AUTH_TYPES:
        choices = ", ".join(AUTH_TYPES)
        raise ConfigError(f"{variable}: unknown auth type {auth_type!r} (registry:2 has {choices})")
    auth = data.get("auth")
    if not isinstance(auth, dict):
        auth = data["auth"] = {}
    # registry:2 takes one auth type: the variable replaces the file's.
    auth.pop("token" if chosen == "htpasswd" else "htpasswd", None)
    if not isinstance(auth.get(chosen), dict):
        auth[chosen] = {}
    return chosen


def check_keys(data: dict[str, Any], origins: Mapping[KeyPath, str], warnings: list[str]) -> None:
    """Refuse what dockyard cannot honour; drop (with a warning) tuning and honoured values."""
    for key_path, reason in REFUSED.items():
        value = _pop(data, key_path)
        if value is not None and value != []:  # `auth: {silly: {}}` asks for silly auth too
            raise ConfigError(f"{_where(key_path, origins)}: not supported: {reason}")
    for key_path, (values, reason) in HONOURED.items():
        value = _pop(data, key_path)
        if value is not None and value not in values:
            shown = ", ".join(repr(v) for v in values if v != "")
            where = _where(key_path, origins)
            raise ConfigError(f"{where}: {value!r} is not supported ({reason}; use {shown})")
    for key_path, reason in TUNING.items():
        if _given(_pop(data, key_path)):
            warnings.append(f"{_where(key_path, origins)}: accepted, not applied ({reason})")
    notifications = data.get("notifications")
    if isinstance(notifications, dict) and notifications.get("events") in ({}, None):
        notifications.pop("events", None)  # held only includereferences: false
    for section in FOREIGN_SECTIONS:
        if section in data and not _given(data[section]):
            del data[section]  # emptied above (`health` had only `storagedriver`), or empty as written


def _given(value: Any) -> bool:
    return value is not None and value != {} and value != []


def _pop(data: dict[str, Any], key_path: KeyPath) -> Any:
    node: Any = data
    for key in key_path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    return node.pop(key_path[-1], None)


def _where(key_path: KeyPath, origins: Mapping[KeyPath, str]) -> str:
    names = sorted({name for path, name in origins.items() if path[: len(key_path)] == key_path})
    return ".".join(key_path) + (f" (from {', '.join(names)})" if names else "")
