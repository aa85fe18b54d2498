"""auth.oidc: what a start refuses before any provider is asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.config.loader import load_settings
from dockyard.errors import ConfigError

OIDC = {"issuer": "https://sso.example.com/realms/main", "client_id": "dockyard", "client_secret": "s3cret"}


def load(tmp_path: Path, config: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, environ or {})


def refused(tmp_path: Path, config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config)
    return str(caught.value)


def test_the_redirect_uri_comes_from_the_config_never_from_a_request(tmp_path: Path) -> None:
    message = refused(tmp_path, {"auth": {"oidc": OIDC}})
    assert "auth.oidc needs auth.oidc.redirect_uri or http.host" in message
    with_host = load(tmp_path, {"http": {"host": "https://registry.example.com"}, "auth": {"oidc": OIDC}})
    assert with_host.auth.oidc.redirect_uri is None
    given = {**OIDC, "redirect_uri": "https://registry.example.com/ui/oidc/callback"}
    assert load(tmp_path, {"auth": {"oidc": given}}).auth.oidc.redirect_uri == given["redirect_uri"]


@pytest.mark.parametrize(
    "key, value",
    [
        ("issuer", "http://sso.example.com/realms/main"),  # plain HTTP off loopback
        ("issuer", "https://sso.example.com/realms/main?x=1"),
        ("issuer", "sso.example.com"),
        ("redirect_uri", "http://registry.example.com/ui/oidc/callback"),
        ("client_secret", ""),
        ("timeout", 0),
    ],
)
def test_unsafe_or_broken_values_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    config = {"http": {"host": "https://registry.example.com"}, "auth": {"oidc": {**OIDC, key: value}}}
    assert f"auth.oidc.{key}" in refused(tmp_path, config)


def test_the_client_secret_can_come_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    without = {key: value for key, value in OIDC.items() if key != "client_secret"}
    config = {"http": {"host": "https://registry.example.com"}, "auth": {"oidc": without}}
    settings = load(tmp_path, config, {"DOCKYARD_AUTH_OIDC_CLIENT_SECRET": "from-the-environment"})
    assert settings.auth.oidc.client_secret == "from-the-environment"
    assert "from-the-environment" not in repr(settings)
    loopback = {**OIDC, "issuer": "http://127.0.0.1:8080/realms/main"}
    assert load(tmp_path, {**config, "auth": {"oidc": loopback}}).auth.oidc.issuer.startswith("http://127")
