"""The token realm in `WWW-Authenticate` (where clients send the credentials they are asked for) comes
from the configuration when it says: `auth.token.realm`, else `http.host` + `/token`. Only without
either is it built from the request, and then never from a Host header that could inject into the
challenge. A forged Host header must not send clients elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.inprocess import in_process_client
from tests.support.ociclient import describe

FORGED = "attacker.example"


def challenge(workdir: Path, config: dict[str, Any], host: str | bytes) -> dict[str, str]:
    with in_process_client(workdir, config) as http:
        response = http.get("/v2/fuzz/app/manifests/v1", headers={"Host": host})
    assert response.status_code == 401, describe(response)
    scheme, _, params = response.headers["www-authenticate"].partition(" ")
    assert scheme == "Bearer"
    parsed = {}
    for part in params.split('",'):
        key, _, value = part.partition("=")
        parsed[key] = value.strip('"')
    return parsed


def test_http_host_sets_the_realm_whatever_the_host_header(tmp_path: Path) -> None:
    config = {"http": {"host": "https://registry.example.com/"}}
    assert challenge(tmp_path, config, FORGED)["realm"] == "https://registry.example.com/token"


def test_auth_token_realm_wins_over_http_host(tmp_path: Path) -> None:
    config = {
        "http": {"host": "https://registry.example.com"},
        "auth": {"token": {"realm": "https://auth.example.com/token"}},
    }
    assert challenge(tmp_path, config, FORGED)["realm"] == "https://auth.example.com/token"


def test_without_either_the_realm_follows_the_host_the_client_used(tmp_path: Path) -> None:
    assert challenge(tmp_path, {}, "registry.internal:5000")["realm"] == "http://registry.internal:5000/token"


@pytest.mark.parametrize(
    "forged",
    ['evil.example",service="x', "evil.example/path", "user@evil.example", b"evil\xff.example", "a b"],
)
def test_a_host_header_that_is_no_host_is_not_put_in_the_challenge(tmp_path: Path, forged: str) -> None:
    parsed = challenge(tmp_path, {}, forged)
    assert parsed["service"] == "dockyard"
    assert "evil" not in parsed["realm"] and " " not in parsed["realm"]
    assert parsed["realm"].endswith("/token")
