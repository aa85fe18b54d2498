"""registry:2's keys and REGISTRY_* variables: each is applied, honoured or refused at start, never
ignored. The auth types first (a REGISTRY_AUTH=htpasswd that was ignored ran the registry open),
then every key of registry:2 dockyard does not model, from a file and from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.bootstrap import auth_mode
from dockyard.config import registry2
from dockyard.config.loader import load_config
from dockyard.errors import ConfigError

HTPASSWD_ENV = {
    "REGISTRY_AUTH": "htpasswd",
    "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
    "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd",
}
TOKEN_FILE = {"realm": "https://auth.example/token", "service": "registry", "rootcertbundle": "/b.pem"}
TOKEN_ENV = {
    "REGISTRY_AUTH": "token",
    "REGISTRY_AUTH_TOKEN_REALM": "https://auth.example/token",
    "REGISTRY_AUTH_TOKEN_SERVICE": "registry.example",
    "REGISTRY_AUTH_TOKEN_ISSUER": "auth.example",
    "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": "/certs/bundle.pem",
}


@pytest.fixture
def registry2_file(tmp_path: Path) -> Any:
    def write(extra: dict[str, Any] | None = None) -> Path:
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump({"version": "0.1", **(extra or {})}))
        return path

    return write


def refusal(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return caught.value.message


# --- auth -----------------------------------------------------------------------------------------
def test_htpasswd_from_the_environment_turns_auth_on(registry2_file: Any) -> None:
    """The issue: a `version: 0.1` file plus these three variables ran with no authentication."""
    loaded = load_config(registry2_file(), HTPASSWD_ENV)
    htpasswd = loaded.settings.auth.htpasswd
    assert htpasswd is not None
    assert (htpasswd.realm, htpasswd.path) == ("Registry Realm", Path("/auth/htpasswd"))
    assert auth_mode(loaded.settings) == "htpasswd"
    assert not [w for w in loaded.warnings if "open" in w]
    assert auth_mode(load_config(None, HTPASSWD_ENV).settings) == "htpasswd"  # without a file too


def test_htpasswd_from_the_file(registry2_file: Any) -> None:
    path = registry2_file({"auth": {"htpasswd": {"realm": "r", "path": "/auth/htpasswd"}}})
    assert auth_mode(load_config(path, {}).settings) == "htpasswd"


def test_token_from_the_environment_or_the_file(registry2_file: Any) -> None:
    for loaded in (
        load_config(registry2_file(), TOKEN_ENV),
        load_config(None, TOKEN_ENV),
        load_config(
            registry2_file(
                {
                    "auth": {
                        "token": {
                            "realm": "https://auth.example/token",
                            "service": "registry.example",
                            "issuer": "auth.example",
                            "rootcertbundle": "/certs/bundle.pem",
                        }
                    }
                }
            ),
            {},
        ),
    ):
        token = loaded.settings.auth.token
        assert auth_mode(loaded.settings) == "token"
        assert (token.realm, token.service, token.issuer) == (
            "https://auth.example/token",
            "registry.example",
            "auth.example",
        )
        assert token.rootcertbundle == Path("/certs/bundle.pem")


def test_token_mode_without_its_certificates_is_refused(registry2_file: Any) -> None:
    without = {k: v for k, v in TOKEN_ENV.items() if k != "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE"}
    for path in (registry2_file(), None):
        said = refusal(path, without)
        assert "REGISTRY_AUTH" in said and "rootcertbundle" in said


def test_the_environment_chooses_the_auth_type_over_the_file(registry2_file: Any) -> None:
    path = registry2_file({"auth": {"htpasswd": {"realm": "r", "path": "/auth/htpasswd"}}})
    assert auth_mode(load_config(path, TOKEN_ENV).settings) == "token"
    path = registry2_file({"auth": {"token": {"realm": "x", "service": "s", "rootcertbundle": "/b.pem"}}})
    assert auth_mode(load_config(path, HTPASSWD_ENV).settings) == "htpasswd"


def test_two_auth_types_at_once_are_refused(registry2_file: Any) -> None:
    both = {
        "htpasswd": {"realm": "r", "path": "/p"},
        "token": {"realm": "x", "service": "s", "rootcertbundle": "/b"},
    }
    assert "one auth type" in refusal(registry2_file({"auth": both}))
    token_file = registry2_file({"auth": {"token": both["token"]}})
    said = refusal(token_file, {"REGISTRY_AUTH_HTPASSWD_PATH": "/p"})
    assert "one auth type" in said and "REGISTRY_AUTH_HTPASSWD_PATH" in said


@pytest.mark.parametrize("environ", [{"REGISTRY_AUTH": "silly"}, {"REGISTRY_AUTH_SILLY_REALM": "r"}])
def test_silly_auth_is_refused_from_the_environment(registry2_file: Any, environ: dict[str, str]) -> None:
    said = refusal(registry2_file(), environ)
    assert next(iter(environ)) in said and "silly" in said


def test_silly_auth_is_refused_from_the_file(registry2_file: Any) -> None:
    for silly in ({"realm": "r", "service": "s"}, {}):
        assert refusal(registry2_file({"auth": {"silly": silly}})).startswith("auth.silly: not supported")


def test_an_unknown_auth_type_is_refused(registry2_file: Any) -> None:
    assert "unknown auth type 'ldap'" in refusal(registry2_file(), {"REGISTRY_AUTH": "ldap"})


def test_no_auth_runs_open_as_registry2_does_and_says_so(registry2_file: Any) -> None:
    loaded = load_config(registry2_file(), {})
    assert auth_mode(loaded.settings) == "none"
    assert any(w.startswith("auth: no auth section") for w in loaded.warnings)


# --- every other registry:2 key -------------------------------------------------------------------
def _variable(key_path: tuple[str, ...]) -> str:
    return "REGISTRY_" + "_".join(key.upper() for key in key_path)


def _nested(key_path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(key_path):
        value = {key: value}
    return value


@pytest.mark.parametrize("key_path", sorted(registry2.REFUSED), ids=".".join)
def test_keys_dockyard_cannot_apply_are_refused(registry2_file: Any, key_path: tuple[str, ...]) -> None:
    from_file = refusal(registry2_file(_nested(key_path, "x")))
    assert from_file.startswith(f"{'.'.join(key_path)}: not supported"), from_file
    from_env = refusal(registry2_file(), {_variable(key_path): "x"})
    assert f"(from {_variable(key_path)})" in from_env and "not supported" in from_env


@pytest.mark.parametrize("key_path", sorted(registry2.HONOURED), ids=".".join)
def test_keys_are_accepted_with_the_value_dockyard_has_and_refused_otherwise(
    registry2_file: Any, key_path: tuple[str, ...]
) -> None:
    honoured, _ = registry2.HONOURED[key_path]
    value = honoured[0]
    # auth.token.autoredirect needs the rest of a token section to be a valid config at all.
    base = {"auth": {"token": TOKEN_FILE}} if key_path[:2] == ("auth", "token") else {}
    environ = TOKEN_ENV if base else {}

    def written(value: Any) -> Path:
        config = _nested(key_path, value)
        if base:
            config["auth"]["token"] = {**TOKEN_FILE, **config["auth"]["token"]}
        return registry2_file(config)

    assert [w for w in load_config(written(value), {}).warnings if not w.startswith("auth: no auth")] == []
    load_config(registry2_file(base), {**environ, _variable(key_path): str(value).lower()})
    other = {"http.net": "unix", "http.prefix": "/registry/", "http.tls.minimumtls": "tls1.3"}
    wrong = other.get(".".join(key_path), True)
    assert "is not supported" in refusal(written(wrong))
    said = refusal(registry2_file(base), {**environ, _variable(key_path): str(wrong).lower()})
    assert _variable(key_path) in said and "is not supported" in said


@pytest.mark.parametrize("key_path", sorted(registry2.TUNING), ids=".".join)
def test_tuning_keys_are_accepted_with_a_warning(registry2_file: Any, key_path: tuple[str, ...]) -> None:
    loaded = load_config(registry2_file(_nested(key_path, {"x": 1})), {})
    assert [w for w in loaded.warnings if w.startswith(f"{'.'.join(key_path)}: accepted, not applied")]
    loaded = load_config(registry2_file(), {_variable(key_path) + "_X": "1"})
    assert [w for w in loaded.warnings if f"(from {_variable(key_path)}_X)" in w]


def test_autoredirect_the_issue_names(registry2_file: Any) -> None:
    token = {"realm": "x", "service": "s", "rootcertbundle": "/b.pem", "autoredirect": True}
    said = refusal(registry2_file({"auth": {"token": token}}))
    assert said.startswith("auth.token.autoredirect: True is not supported")
    said = refusal(registry2_file(), {**TOKEN_ENV, "REGISTRY_AUTH_TOKEN_AUTOREDIRECT": "true"})
    assert "REGISTRY_AUTH_TOKEN_AUTOREDIRECT" in said


def test_a_storage_driver_parameter_dockyard_lacks_is_refused(registry2_file: Any) -> None:
    """registry:2's s3 `encrypt` (or `keyid`) silently dropped would leave the bucket unencrypted."""
    environ = {
        "REGISTRY_STORAGE": "s3",
        "REGISTRY_STORAGE_S3_BUCKET": "b",
        "REGISTRY_STORAGE_S3_ENCRYPT": "true",
    }
    said = refusal(registry2_file(), environ)
    assert said.startswith("storage.s3.encrypt (from ")
    assert "REGISTRY_STORAGE_S3_ENCRYPT): unknown key" in said
    path = registry2_file({"storage": {"s3": {"bucket": "b", "keyid": "k"}}})
    assert "storage.s3.keyid: unknown key" in refusal(path)


def test_one_notification_endpoint_key_from_the_environment_is_refused(registry2_file: Any) -> None:
    """registry:2 cannot set one item of a list from a variable either; ignoring it would lose events."""
    said = refusal(registry2_file(), {"REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL": "https://hooks.example/"})
    assert said.startswith("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL: notifications.endpoints is a list")
    assert "REGISTRY_NOTIFICATIONS_ENDPOINTS='[" in said


def test_notification_endpoints_from_a_registry2_file_and_variables(registry2_file: Any) -> None:
    path = registry2_file(
        {
            "notifications": {
                "events": {"includereferences": False},
                "endpoints": [
                    {
                        "name": "alistener",
                        "url": "https://mylistener.example.com/event",
                        "headers": {"Authorization": ["Bearer t0ken"]},
                        "timeout": "500ms",
                        "threshold": 5,
                        "backoff": "1s",
                        "ignoredmediatypes": ["application/octet-stream"],
                        "ignore": {"mediatypes": ["application/x-foo"], "actions": ["pull"]},
                    }
                ],
            }
        }
    )
    endpoint = load_config(path, {}).settings.notifications.endpoints[0]
    assert (endpoint.name, endpoint.timeout.seconds, endpoint.threshold, endpoint.backoff.seconds) == (
        "alistener", 0.5, 5, 1.0
    )  # fmt: skip
    assert endpoint.headers == {"Authorization": ["Bearer t0ken"]}
    assert endpoint.ignores("push", "application/octet-stream")
    assert endpoint.ignores("push", "application/x-foo")
    assert endpoint.ignores("pull", "application/vnd.oci.image.manifest.v1+json")
    assert not endpoint.ignores("push", "application/vnd.oci.image.manifest.v1+json")
    assert "Bearer" not in repr(endpoint)

    environ = {
        "REGISTRY_NOTIFICATIONS_ENDPOINTS": "[{name: ci, url: 'https://ci.example/hook', disabled: true}]"
    }
    notifications = load_config(registry2_file(), environ).settings.notifications
    assert [(e.name, e.disabled) for e in notifications.endpoints] == [("ci", True)]
    assert notifications.active == []


def test_notification_events_with_references_are_refused(registry2_file: Any) -> None:
    environ = {"REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES": "true"}
    said = refusal(registry2_file(), environ)
    assert said.startswith("notifications.events.includereferences (from REGISTRY_NOTIFICATIONS_EVENTS_")


def test_a_notification_endpoint_needs_an_http_url_and_a_unique_name(registry2_file: Any) -> None:
    endpoint = {"name": "a", "url": "file:///etc/passwd"}
    assert "expected an http:// or https:// URL" in refusal(
        registry2_file({"notifications": {"endpoints": [endpoint]}})
    )
    twice = [{"name": "a", "url": "https://x/"}, {"name": "a", "url": "https://y/"}]
    assert "endpoint names must be unique: a" in refusal(
        registry2_file({"notifications": {"endpoints": twice}})
    )


# --- proxy: registry:2's pull-through cache, applied (it was refused before mirror mode) ----------------
PROXY = {"remoteurl": "https://registry-1.docker.io", "username": "me", "password": "secret"}


def test_the_proxy_section_is_applied_from_the_file_and_the_environment(registry2_file: Any) -> None:
    from_file = load_config(registry2_file({"proxy": PROXY}), {}).settings.proxy
    environ = {f"REGISTRY_PROXY_{key.upper()}": value for key, value in PROXY.items()}
    from_env = load_config(registry2_file(), environ).settings.proxy
    for proxy in (from_file, from_env):
        assert (proxy.remoteurl, proxy.username, proxy.password) == (PROXY["remoteurl"], "me", "secret")
        assert proxy.tag_ttl.seconds == 0  # every pull by tag asks upstream, as registry:2 does
        assert "secret" not in repr(proxy)


def test_registry2_proxy_ttl_is_accepted_with_a_warning(registry2_file: Any) -> None:
    """registry:2 expires cached content after `ttl`; dockyard keeps it (retention and GC decide): what
    a client gets is the same, so the key is accepted and the start says it is not applied."""
    for loaded in (
        load_config(registry2_file({"proxy": {**PROXY, "ttl": "168h"}}), {}),
        load_config(registry2_file({"proxy": PROXY}), {"REGISTRY_PROXY_TTL": "168h"}),
    ):
        assert loaded.settings.proxy.remoteurl == PROXY["remoteurl"]
        assert [w for w in loaded.warnings if w.startswith("proxy.ttl")], loaded.warnings


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"remoteurl": "http://x.example", "exec": {"command": "helper"}}, "proxy.exec"),
        ({"remoteurl": "http://x.example", "password": "p"}, "proxy.password needs proxy.username"),
        ({"remoteurl": "http://x.example", "bogus": 1}, "bogus"),
        ({"remoteurl": "http://x.example", "namespaces": {"docker.io": "hub"}}, "excludes proxy.namespaces"),
        ({"namespaces": {"docker.io": "hub"}, "default_namespace": "quay.io"}, "not a key of"),
    ],
)
def test_bad_proxy_sections_stop_the_start(
    registry2_file: Any, section: dict[str, Any], message: str
) -> None:
    assert message in refusal(registry2_file({"proxy": section}))


def test_a_proxy_exec_from_the_environment_is_refused(registry2_file: Any) -> None:
    assert "proxy.exec" in refusal(registry2_file(), {"REGISTRY_PROXY_EXEC_COMMAND": "helper"})
