"""Start a real OpenID provider for tests: `oidc-provider` from the npm registry (the certified
implementation, pinned in tests/support/oidc/package.json and package-lock.json, installed into
tests/support/oidc/node_modules by scripts/install-test-deps.sh), run by node on a free loopback port,
with one confidential client (PKCE required) and static users who have a groups claim.

Logins go through oidc-provider's development interactions: a login form (any password for a
configured user), then a consent form. `login_with_http` drives both with httpx, as a browser would.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.support.processes import stop_process
from tests.support.server import REPO_ROOT, RunningServer, free_port, require_tool, start_server

PROVIDER_DIR = REPO_ROOT / "tests" / "support" / "oidc"
CLIENT_ID = "dockyard"
CLIENT_SECRET = "dockyard-test-client-secret-0123456789"
# Static users: their claims as the provider gives them (`sub` is the login name unless set).
USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "email": "alice@example.com",
        "name": "Alice Liddell",
        "groups": ["developers", "registry-admins"],
    },
    "bob": {"email": "bob@example.com", "name": "Bob", "groups": ["developers"]},
    "carol": {"email": "carol@example.com", "name": "Carol", "groups": []},
    # Names dockyard's local administrator: the provider must not get that account.
    "admin": {"groups": ["registry-admins"]},
    # Claims the same name as alice with another subject: an impostor the provider let rename itself.
    "mallory": {"sub": "mallory-subject", "preferred_username": "alice", "groups": ["registry-admins"]},
}


@dataclass
class RunningProvider:
    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)

    def settings(self, **extra: Any) -> dict[str, Any]:
        """dockyard's `auth.oidc` for this provider."""
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scopes": ["openid", "profile", "email", "groups"],
            "admin_groups": ["registry-admins"],
            **extra,
        }


def start_provider(
    workdir: Path,
    redirect_uris: list[str],
    *,
    users: Mapping[str, dict[str, Any]] = USERS,
    extra_clients: list[dict[str, Any]] | None = None,
    timeout: float = 20.0,
) -> RunningProvider:
    node = require_tool("node")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("oidc-provider is not installed: run `make test` (scripts/install-test-deps.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    config = {"port": port, "clients": [client, *(extra_clients or [])], "users": dict(users)}
    config_path = workdir / "provider.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / "provider.log"
    process = subprocess.Popen(
        [node, str(PROVIDER_DIR / "provider.mjs"), str(config_path)],
        stdout=subprocess.PIPE,
        stderr=log_path.open("wb"),
        cwd=PROVIDER_DIR,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith(b"ready "):
                issuer = line.split()[1].decode()
                return RunningProvider(issuer, CLIENT_ID, CLIENT_SECRET, process, log_path)
    stop_process(process)
    raise RuntimeError(f"oidc-provider did not start: {line!r}\n{log_path.read_text(errors='replace')}")


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def login_with_http(http: httpx.Client, authorization_url: str, login: str, client_url: str) -> str:
    """Follow the provider from `authorization_url` through its login and consent forms as `login`,
    until it sends the browser back to the client (a URL starting with `client_url`): that URL, with
    its code and state."""
    answer = http.get(authorization_url)
    for _ in range(12):
        if answer.is_redirect:
            location = urljoin(str(answer.url), answer.headers["location"])
            if location.startswith(client_url):
                return location
            answer = http.get(location)
            continue
        assert answer.status_code == 200, (answer.status_code, answer.text[:500])
        action = _FORM_ACTION.search(answer.text)
        assert action, answer.text[:500]
        if 'name="login"' in answer.text:
            fields = {"prompt": "login", "login": login, "password": "any"}
        else:
            fields = {"prompt": "consent"}
        answer = http.post(urljoin(str(answer.url), action.group(1)), data=fields)
    raise AssertionError("the provider's login did not end in a redirect to the client")


@contextmanager
def provider_and_dockyard(
    workdir: Path, admin_password: str
) -> Iterator[tuple[RunningProvider, RunningServer]]:
    """A provider and a `dockyard serve` (auth on) that signs on through it, on one free port known to both
    before either starts (the provider registers the callback URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = start_provider(workdir / "provider", [f"{url}/ui/oidc/callback"])
    try:
        config = {
            "http": {"addr": f"127.0.0.1:{port}", "host": url},
            "auth": {"enabled": True, "oidc": provider.settings(display_name="Example SSO")},
        }
        server = start_server(workdir / "dockyard", config, env={"DOCKYARD_ADMIN_PASSWORD": admin_password})
        try:
            yield provider, server
        finally:
            server.stop()
    finally:
        provider.stop()
