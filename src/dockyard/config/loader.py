"""Read Settings from a YAML file, then DOCKYARD_* and REGISTRY_* environment variables.

The rules follow registry:2 so its users can bring their `config.yml` and `REGISTRY_*` variables:

- An environment variable names a key path upper-cased and joined by underscores:
  `DOCKYARD_STORAGE_MAINTENANCE_UPLOADPURGING_AGE=2h` sets `storage.maintenance.uploadpurging.age`.
  Names are resolved against the model's fields, so a field with an underscore in its name still works.
- `REGISTRY_*` is read as registry:2 reads it, for registry:2's own keys (`REGISTRY_AUTH=htpasswd`
  selects that auth type, as `REGISTRY_STORAGE=inmemory` selects the driver); `DOCKYARD_*` wins when
  both set the same key.
- registry:2 keys dockyard does not model are honoured or refused at start, never ignored
  (config/registry2.py); any other unknown key, or an invalid value, raises ConfigError naming the key
  path or the variable that set it.
- A registry:2 file (`version: 0.1`) keeps registry:2's default of `storage.delete.enabled: false`.
"""

from __future__ import annotations

import logging
import os
import ssl
import types
import typing
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dockyard.config import registry2
from dockyard.config.settings import Settings
from dockyard.config.storage_settings import DRIVER_NAMES
from dockyard.errors import ConfigError
from dockyard.lifecycle import SETTINGS_ENV

logger = logging.getLogger("dockyard.config")

KeyPath = tuple[str, ...]

# registry:2 key paths with the same meaning under another name here.
RENAMED: dict[KeyPath, KeyPath] = {
    ("http", "draintimeout"): ("http", "drain_timeout"),
    ("loglevel",): ("log", "level"),  # deprecated in registry:2; log.level wins when both are set
}
# Storage drivers registry:2 has and dockyard does not (yet): an error, never a silent fallback.
UNSUPPORTED_DRIVERS = frozenset({"azure", "gcs", "swift", "oss"})
_SECTION_NAMES = frozenset(
    {
        "http",
        "tls",
        "auth",
        "token",
        "redirect",
        "login_limit",
        "audit",
        "jobs",
        "storage",
        "filesystem",
        "inmemory",
        "delete",
        "maintenance",
        "uploadpurging",
        "uploads",
        "readonly",
        "cache",
        "database",
        "redis",
        "log",
        "accesslog",
        "metrics",
        "headers",
        "fields",
        "notifications",
        "ignore",
        "webhooks",
    }
)
# REGISTRY_* variables set dockyard's keys in these sections; auth only registry:2's keys of it.
REGISTRY_SECTIONS = frozenset({"http", "storage", "log", "notifications"})
# Variables with these prefixes that are not settings (read by the CLI, or by registry:2 itself).
NOT_SETTINGS = frozenset(
    {
        "DOCKYARD_CONFIG",
        "REGISTRY_CONFIGURATION_PATH",
        "DOCKYARD_ADMIN_PASSWORD",
        "DOCKYARD_MOVE_TO_DATABASE",
        # The test suite's cheap password hashes (accounts.passwords warns wherever it is used).
        "DOCKYARD_INSECURE_TEST_PASSWORD_HASHES",
    }
)
_ENV_PREFIXES = ("REGISTRY_", "DOCKYARD_")  # applied in this order, so DOCKYARD_* wins


@dataclass
class LoadedConfig:
    settings: Settings
    # Things accepted but not applied (registry:2 sections, unknown variables), one sentence each.
    warnings: list[str] = field(default_factory=list)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `path` (if any) and `environ` (default: os.environ); warnings go to the log.

    Raises ConfigError naming the key path of every invalid value or unknown key.
    """
    loaded = load_config(path, environ)
    for warning in loaded.warnings:
        logger.warning("%s", warning)
    return loaded.settings


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Like load_settings, but returns the warnings for the caller to show (`dockyard config check`)."""
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    data = _read_file(path) if path is not None else {}
    _normalise_driver_sections(data)
    origins = _apply_environment(data, environ, warnings)
    _rename_registry2_keys(data)
    registry2.check_keys(data, origins, warnings)
    _reject_unsupported_drivers(data, origins)
    _check_registry2_auth(data, origins, environ, warnings)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins, path), detail=exc.errors()) from None
    _check_files_exist(settings)
    return LoadedConfig(settings, warnings)


def hand_down(settings: Settings, environ: MutableMapping[str, str] | None = None) -> None:
    """Leave the validated settings in the environment for the processes `serve` starts (the server the
    CLI execs into when it parsed the command line, its HTTP workers, its job runner), which take them
    (`handed_down`) instead of reading the config file again: every process of a node runs on what was
    checked once at start, also a worker started again after the file was edited, and the file's
    warnings are logged once. The environment of a process is readable by its own user only, as the
    config file should be."""
    environ = os.environ if environ is None else environ
    environ[SETTINGS_ENV] = settings.model_dump_json()


def handed_down(environ: Mapping[str, str] | None = None) -> Settings | None:
    """The settings `hand_down` left for this process, if any."""
    environ = os.environ if environ is None else environ
    value = environ.get(SETTINGS_ENV)
    return Settings.model_validate_json(value) if value else None


def config_error_message(exc: ConfigError) -> str:
    """The one line a command prints for a bad configuration."""
    if exc.message.startswith("invalid configuration"):
        return exc.message
    return f"invalid configuration: {exc.message}"


def config_path_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file named by DOCKYARD_CONFIG (or registry:2's REGISTRY_CONFIGURATION_PATH), if any."""
    environ = os.environ if environ is None else environ
    value = environ.get("DOCKYARD_CONFIG") or environ.get("REGISTRY_CONFIGURATION_PATH")
    return Path(value) if value else None


# --- the file ---------------------------------------------------------------------------------
def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a YAML mapping, got {type(data).__name__}")
    return data


def _normalise_driver_sections(data: dict[str, Any]) -> None:
    """A section written with no value (`inmemory:`, or `tls:` with every key commented out) is an
    empty section, as registry:2 reads it."""
    for key, value in list(data.items()):
        if value is None and _is_section(key, data):
            data[key] = {}
        elif isinstance(value, dict):
            _normalise_driver_sections(value)


def _is_section(key: str, parent: dict[str, Any]) -> bool:
    # Leaf values may legitimately be null (e.g. `http.host: null`); sections are these names.
    return key in _SECTION_NAMES


def _is_registry2(data: dict[str, Any]) -> bool:
    return str(data.get("version", "")).startswith("0.")


def _rename_registry2_keys(data: dict[str, Any]) -> None:
    for old, new in RENAMED.items():
        parent = _get(data, old[:-1])
        if isinstance(parent, dict) and old[-1] in parent:
            value = parent.pop(old[-1])
            if _get(data, new) is None:
                _set(data, new, value)


def _check_registry2_auth(
    data: dict[str, Any], origins: dict[KeyPath, str], environ: Mapping[str, str], warnings: list[str]
) -> None:
    """registry:2's auth: one type, token mode with its issuer's certificates, none means open."""
    token = _get(data, ("auth", "token"))
    selector = origins.get(("auth",))  # REGISTRY_AUTH, when it chose the type
    chosen_token = selector is not None and environ[selector].strip().lower() == "token"
    token_mode = isinstance(token, dict) and (
        _is_registry2(data) or "rootcertbundle" in token or chosen_token
    )
    if isinstance(token, dict) and token_mode and not token.get("rootcertbundle"):
        where = _source(("auth", "token"), origins)
        raise ConfigError(
            f"auth.token{where}: registry:2 token auth needs rootcertbundle (the issuer's certificates)"
        )
    if _get(data, ("auth", "htpasswd")) is not None and token_mode:
        where = _source(("auth",), origins)
        raise ConfigError(f"auth{where}: registry:2 takes one auth type; both htpasswd and token are set")
    if _is_registry2(data):
        _set_default(data, ("storage", "delete", "enabled"), False)
        # registry:2 without an auth section is open; with htpasswd or token it uses those.
        _set_default(data, ("auth", "enabled"), False)
        if _get(data, ("auth", "htpasswd")) is None and not token_mode:
            warnings.append("auth: no auth section in this registry:2 config: the registry is open to anyone")


def _reject_unsupported_drivers(data: dict[str, Any], origins: dict[KeyPath, str]) -> None:
    storage = data.get("storage")
    if not isinstance(storage, dict):
        return
    for name in sorted(UNSUPPORTED_DRIVERS & storage.keys()):
        raise _unsupported_driver(f"storage.{name}{_source(('storage', name), origins)}", name)


def _unsupported_driver(where: str, driver: str) -> ConfigError:
    choices = ", ".join(DRIVER_NAMES)
    return ConfigError(f"{where}: storage driver {driver!r} is not supported; use one of: {choices}")


def _check_files_exist(settings: Settings) -> None:
    tls = settings.http.tls
    for key, file in (("certificate", tls.certificate), ("key", tls.key)):
        if file is not None and not file.is_file():
            raise ConfigError(f"http.tls.{key}: file not found: {file}")
    if tls.certificate is not None and tls.key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            # A password callback that refuses, so an encrypted key fails here instead of prompting.
            context.load_cert_chain(tls.certificate, tls.key, password=lambda: b"")
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"http.tls: cannot use certificate {tls.certificate} with key {tls.key} "
                f"(is the key encrypted, or not the certificate's?): {exc}"
            ) from None


# --- the environment ----------------------------------------------------------------------------
def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str], warnings: list[str]
) -> dict[KeyPath, str]:
    """Merge DOCKYARD_*/REGISTRY_* into `data`; returns which variable set each key path."""
    origins: dict[KeyPath, str] = {}
    for prefix in _ENV_PREFIXES:
        # Shallow paths first, so DOCKYARD_HTTP_TLS='{...}' does not undo DOCKYARD_HTTP_TLS_KEY.
        names = sorted(
            (n for n in environ if n.startswith(prefix) and n not in NOT_SETTINGS),
            key=lambda n: (n.count("_"), n),
        )
        for name in names:
            tokens = [t for t in name[len(prefix) :].split("_") if t]
            if prefix == "REGISTRY_" and tokens == ["AUTH"]:
                registry2.select_auth(data, name, environ[name])
                origins[("auth",)] = name
                continue
            resolved = _resolve(Settings, tokens) if tokens else None
            if resolved is not None and prefix == "REGISTRY_" and not _registry2_applies(resolved[0]):
                resolved = None  # e.g. REGISTRY_DATADIR: not a registry:2 setting
            if resolved is None:
                key_path = tuple(token.lower() for token in tokens)
                if prefix == "REGISTRY_" and (key_path in RENAMED or registry2.is_registry2_key(key_path)):
                    # registry:2 has it and dockyard does not model it: honoured or refused later.
                    _set(data, key_path, _parse_env_value(environ[name], Any))
                    origins[key_path] = name
                else:
                    warnings.append(_unresolved_warning(name, tokens, prefix))
                continue
            key_path, annotation = resolved
            value = _parse_env_value(environ[name], annotation)
            if key_path == ("storage",) and isinstance(value, str):
                _select_driver(data, name, value)
            else:
                _set(data, key_path, value)
            origins[key_path] = name
    return origins


def _registry2_applies(key_path: KeyPath) -> bool:
    return (
        key_path[0] in REGISTRY_SECTIONS
        or key_path in registry2.APPLIED_AUTH_KEYS
        or key_path in registry2.APPLIED_PROXY_KEYS
    )


def _resolve(model: type[BaseModel], tokens: list[str]) -> tuple[KeyPath, Any] | None:
    """The key path and field type `tokens` (FOO, BAR, ...) name in `model`, trying every underscore split."""
    for end in range(1, len(tokens) + 1):
        name = "_".join(tokens[:end]).lower()
        field_info = model.model_fields.get(name)
        if field_info is None:
            continue
        rest = tokens[end:]
        if not rest:
            return (name,), field_info.annotation
        sub_model = _sub_model(field_info.annotation)
        if sub_model is not None:
            found = _resolve(sub_model, rest)
            if found is not None:
                return (name, *found[0]), found[1]
        elif typing.get_origin(field_info.annotation) is dict:
            # registry:2 reads the rest of the name as the map key, lower-cased (REGISTRY_LOG_FIELDS_SERVICE).
            return (name, "_".join(rest).lower()), typing.get_args(field_info.annotation)[1]
    return None


def _list_under(model: type[BaseModel], tokens: list[str]) -> KeyPath | None:
    """The key path of a list field `tokens` reaches into (REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL), if any."""
    for end in range(1, len(tokens)):
        name = "_".join(tokens[:end]).lower()
        field_info = model.model_fields.get(name)
        if field_info is None:
            continue
        if typing.get_origin(field_info.annotation) is list:
            return (name,)
        sub_model = _sub_model(field_info.annotation)
        found = _list_under(sub_model, tokens[end:]) if sub_model is not None else None
        if found is not None:
            return (name, *found)
    return None


def _unresolved_warning(name: str, tokens: list[str], prefix: str) -> str:
    listed = _list_under(Settings, tokens)
    if listed is not None:  # the user meant to set something: say how, rather than ignore it
        whole = prefix + "_".join(listed).upper()
        raise ConfigError(
            f"{name}: {'.'.join(listed)} is a list, set whole as YAML: {whole}='[{{...}}, {{...}}]'"
        )
    if len(tokens) >= 2 and tokens[0] == "STORAGE" and tokens[1].lower() in UNSUPPORTED_DRIVERS:
        raise _unsupported_driver(name, tokens[1].lower())
    kind = "registry:2 setting" if prefix == "REGISTRY_" else "setting"
    return f"{name}: ignored, it names no {kind} dockyard has"


def _select_driver(data: dict[str, Any], name: str, driver: str) -> None:
    driver = driver.strip().lower()
    if driver in UNSUPPORTED_DRIVERS or driver not in DRIVER_NAMES:
        raise _unsupported_driver(name, driver)
    storage = data.get("storage")
    if not isinstance(storage, dict):
        storage = data["storage"] = {}
    for other in DRIVER_NAMES:
        if other != driver:
            storage.pop(other, None)
    if not isinstance(storage.get(driver), dict):
        storage[driver] = {}


def _parse_env_value(raw: str, annotation: Any) -> Any:
    """Text fields keep the text as written (a secret "0123" stays a string); others are YAML."""
    if _is_text(annotation):
        return None if raw == "" and _allows_none(annotation) else raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # let the model report the bad value against its key path


def _members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _is_text(annotation: Any) -> bool:
    return any(
        member in (str, Path) or typing.get_origin(member) is typing.Literal
        for member in _members(annotation)
    )


def _allows_none(annotation: Any) -> bool:
    return type(None) in _members(annotation)


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


# --- dict helpers ---------------------------------------------------------------------------------
def _get(data: dict[str, Any], key_path: KeyPath) -> Any:
    node: Any = data
    for key in key_path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _set(data: dict[str, Any], key_path: KeyPath, value: Any) -> None:
    node = data
    for key in key_path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[key_path[-1]] = value


def _set_default(data: dict[str, Any], key_path: KeyPath, value: Any) -> None:
    parent = _get(data, key_path[:-1])
    if not isinstance(parent, dict) or key_path[-1] not in parent:
        _set(data, key_path, value)


# --- error messages -------------------------------------------------------------------------------
def _source(key_path: KeyPath, origins: Mapping[KeyPath, str]) -> str:
    """Which variables set this key, a section above it, or (for a section's own check) a key below it."""
    names = sorted(
        {
            name
            for path, name in origins.items()
            if path == key_path[: len(path)] or path[: len(key_path)] == key_path
        }
    )
    return f" (from {', '.join(names)})" if names else ""


def _describe(exc: ValidationError, origins: Mapping[KeyPath, str], path: Path | None) -> str:
    lines = []
    for error in exc.errors():
        key_path = tuple(str(part) for part in error["loc"])
        where = ".".join(key_path) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key{_known_keys_hint(key_path[:-1])}"
        lines.append(f"{where}{_source(key_path, origins)}: {message}")
    header = f"invalid configuration{f' in {path}' if path else ''}:\n" if len(lines) > 1 else ""
    return header + "\n".join(lines)


def _known_keys_hint(parent: KeyPath) -> str:
    model: type[BaseModel] | None = Settings
    for key in parent:
        field_info = model.model_fields.get(key) if model else None
        model = _sub_model(field_info.annotation) if field_info else None
    if model is None:
        return ""
    return f" (expected one of: {', '.join(model.model_fields)})"
