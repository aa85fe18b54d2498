"""The LDAP directory down under a running registry: a login that needs it gets a 503 the client may
retry, on every endpoint that takes a password (/v2 with Basic credentials, /token, /api/v1), never a
500, and the body names no host, port or connection error."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT

# Not an account of dockyard's own: only the directory could say whether the password is right.
DIRECTORY_USER = ("dora", "dora-directory-password-1")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    nothing_listens = f"ldap://127.0.0.1:{free_port()}"
    config = {
        "auth": {"enabled": True, "ldap": {"url": nothing_listens, "user_base_dn": "ou=people,dc=test"}}
    }
    server = start_server(
        tmp_path_factory.mktemp("directory-outage"),
        config,
        env={"DOCKYARD_ADMIN_PASSWORD": "admin-password-1"},
    )
    yield server
    server.stop()


def assert_unavailable(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("content-type", "").startswith("application/json")
    assert response.json() == {"errors": [{"code": code, "message": "the user directory is unavailable"}]}


def test_v2_with_basic_credentials_is_unavailable(registry: RunningServer) -> None:
    response = httpx.get(f"{registry.url}/v2/", auth=DIRECTORY_USER, timeout=HTTP_TIMEOUT)

    assert_unavailable(response, "UNAVAILABLE")
    assert response.headers["retry-after"] == "5"
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def test_token_endpoint_is_unavailable(registry: RunningServer) -> None:
    response = httpx.get(
        f"{registry.url}/token", params={"service": "dockyard"}, auth=DIRECTORY_USER, timeout=HTTP_TIMEOUT
    )

    assert_unavailable(response, "UNAVAILABLE")
    assert response.headers["retry-after"] == "5"


def test_management_api_is_unavailable(registry: RunningServer) -> None:
    response = httpx.get(
        f"{registry.url}/api/v1/users/{DIRECTORY_USER[0]}", auth=DIRECTORY_USER, timeout=HTTP_TIMEOUT
    )

    assert_unavailable(response, "SERVICE_UNAVAILABLE")
