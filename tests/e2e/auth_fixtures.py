"""Fixtures for the authenticated end-to-end suite: a real `dockyard serve` with auth on, over HTTPS, with an
OpenLDAP directory behind it, and a small client for the management API that sets up users, projects,
members, robots and tokens the way an administrator would.

Import the fixtures into a test module with `from tests.e2e.auth_fixtures import *` style names (see
test_auth_clients.py): they are module scoped, so one server and one slapd serve the whole module.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import dockyard_cert, make_ca_dir
from tests.support.server import RunningServer, start_server
from tests.support.slapd import RunningSlapd, start_slapd
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN_PASSWORD = "e2e-admin-password-0123"
DEVELOPER = ("dana", "dana-developer-pw-1")
GUEST = ("gus", "gus-guest-password-2")
AUDIT_WAIT = 10.0  # the audit log writes its queue every second


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @property
    def joined(self) -> str:
        """`user:password`, as skopeo's --creds flags and buildah's --creds take them."""
        return f"{self.username}:{self.password}"


class ManagementApi:
    """The parts of /api/v1 the tests drive, as one user (Basic auth); every call must succeed."""

    def __init__(self, url: str, verify: ssl.SSLContext, credentials: Credentials) -> None:
        self.http = httpx.Client(
            base_url=f"{url}/api/v1",
            verify=verify,
            auth=(credentials.username, credentials.password),
            timeout=HTTP_TIMEOUT,
        )
        self.registry = httpx.Client(
            base_url=url,
            verify=verify,
            auth=(credentials.username, credentials.password),
            timeout=HTTP_TIMEOUT,
        )

    def close(self) -> None:
        self.http.close()
        self.registry.close()

    def call(self, method: str, path: str, expected: int, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expected, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def create_user(self, credentials: Credentials) -> None:
        body = {"username": credentials.username, "password": credentials.password}
        self.call("POST", "/users", 201, json=body)

    def create_project(self, name: str, public: bool = False) -> None:
        self.call("POST", "/projects", 201, json={"name": name, "public": public})

    def set_public(self, project: str, public: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.call("PATCH", f"/projects/{project}", 200, json={"public": public})
        return result

    def add_member(
        self, project: str, role: str, *, user: str | None = None, group: str | None = None
    ) -> None:
        body = {"role": role, **({"user": user} if user else {"group": group})}
        self.call("POST", f"/projects/{project}/members", 201, json=body)

    def create_project_robot(self, project: str, name: str, actions: list[str]) -> Credentials:
        robot = self.call("POST", f"/projects/{project}/robots", 201, json={"name": name, "actions": actions})
        return Credentials(robot["name"], robot["secret"])

    def create_personal_token(self, name: str) -> str:
        """A personal access token of the user this client signs in as."""
        token: dict[str, Any] = self.call("POST", "/me/tokens", 201, json={"name": name})
        return str(token["secret"])

    def tags(self, repository: str) -> list[str] | None:
        """The repository's tags as this user reads them over /v2 (Basic auth); None if it does not exist."""
        response = self.registry.get(f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return sorted(response.json()["tags"] or [])

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        accept = ", ".join(
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        response = self.registry.head(f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept})
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.headers["Docker-Content-Digest"]

    def audit(self, **filters: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.call("GET", "/audit", 200, params={"page_size": 100, **filters})
        return events

    def wait_for_audit(
        self, found: Callable[[list[dict[str, Any]]], bool], **filters: str
    ) -> list[dict[str, Any]]:
        """The audit events matching `filters`, once `found` holds for them (written in batches)."""
        deadline = time.monotonic() + AUDIT_WAIT
        events = self.audit(**filters)
        while not found(events) and time.monotonic() < deadline:
            time.sleep(0.25)
            events = self.audit(**filters)
        return events


@dataclass
class AuthRegistry:
    server: RunningServer
    admin: ManagementApi
    ca_dir: Path  # just the server's CA, for the containers tools' --cert-dir / --tls-verify
    ca_file: Path  # for Python clients' verify=
    slapd: RunningSlapd
    developer: Credentials  # a local user; made a developer of each `project`
    guest: Credentials  # a local user; made a guest of each `project`

    @property
    def host(self) -> str:
        return self.server.host

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts this server's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def api_as(self, credentials: Credentials) -> ManagementApi:
        return ManagementApi(self.server.url, self.ssl_context(), credentials)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """dockyard with its own auth on, HTTPS from `dockyard cert`, LDAP (StartTLS) against a real slapd."""
    root = tmp_path_factory.mktemp("auth-e2e")
    slapd = start_slapd(root / "slapd", tls=True)
    certs = dockyard_cert("127.0.0.1", root / "certs")
    config = {"auth": {"enabled": True, "ldap": slapd.dockyard_ldap()}}
    try:
        server = start_server(
            root / "server",
            config,
            env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
            tls=(certs / "server.crt", certs / "server.key"),
        )
    except BaseException:
        slapd.stop()
        raise
    trust_ca = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    admin = ManagementApi(server.url, trust_ca, Credentials("admin", ADMIN_PASSWORD))
    registry = AuthRegistry(
        server=server,
        admin=admin,
        ca_dir=make_ca_dir(certs, root / "trust"),
        ca_file=certs / "ca.crt",
        slapd=slapd,
        developer=Credentials(*DEVELOPER),
        guest=Credentials(*GUEST),
    )
    try:
        admin.create_user(registry.developer)
        admin.create_user(registry.guest)
        yield registry
    finally:
        admin.close()
        server.stop()
        slapd.stop()


@pytest.fixture
def project(auth_registry: AuthRegistry, request: pytest.FixtureRequest) -> str:
    """A new private project for this test: the developer is a developer in it, the guest a guest."""
    name = "p-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    auth_registry.admin.create_project(name)
    auth_registry.admin.add_member(name, "developer", user=auth_registry.developer.username)
    auth_registry.admin.add_member(name, "guest", user=auth_registry.guest.username)
    return name
