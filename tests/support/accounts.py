"""Accounts, robots and tokens made through a real server's management API, for the revocation tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

SERVICE = "dockyard"
USER_PASSWORD = "revocation-user-password-1"
_numbers = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}"


@dataclass
class Accounts:
    """Makes accounts on `server` as its administrator."""

    server: RunningServer
    admin: tuple[str, str]

    def api(self, auth: Any = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.server.url}/api/v1", auth=auth or self.admin, timeout=HTTP_TIMEOUT
        )

    def user(self, password: str = USER_PASSWORD) -> tuple[str, str]:
        name = unique("user")
        with self.api() as http:
            made = http.post("/users", json={"username": name, "password": password})
        assert made.status_code == 201, made.text
        return name, password

    def project(self, *members: tuple[str, str], role: str = "developer") -> str:
        name = unique("proj")
        with self.api() as http:
            made = http.post("/projects", json={"name": name})
            assert made.status_code == 201, made.text
            for member, _ in members:
                added = http.post(f"/projects/{name}/members", json={"user": member, "role": role})
                assert added.status_code == 201, added.text
        return name

    def robot(self, project: str, actions: tuple[str, ...] = ("pull", "push")) -> tuple[str, str]:
        """A project robot: (full name, secret)."""
        short = unique("ci")
        with self.api() as http:
            made = http.post(f"/projects/{project}/robots", json={"name": short, "actions": list(actions)})
        assert made.status_code == 201, made.text
        return made.json()["name"], made.json()["secret"]

    def personal_token(self, user: tuple[str, str]) -> tuple[int, str]:
        """(id, secret) of a new personal access token, made with the user's password."""
        with self.api(auth=user) as http:
            made = http.post("/me/tokens", json={"name": unique("token")})
        assert made.status_code == 201, made.text
        return made.json()["id"], made.json()["secret"]


def offline_login(server: RunningServer, credentials: tuple[str, str], scope: str = "") -> str:
    """A refresh token, as docker login and containerd get one (OAuth2 password grant, offline)."""
    answer = httpx.post(
        f"{server.url}/token",
        data={
            "grant_type": "password",
            "username": credentials[0],
            "password": credentials[1],
            "service": SERVICE,
            "client_id": "revocation-test",
            "access_type": "offline",
            "scope": scope,
        },
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["refresh_token"])


def refresh(server: RunningServer, refresh_token: str, scope: str = "") -> httpx.Response:
    """One refresh-token grant on a fresh connection (so any worker may answer)."""
    return httpx.post(
        f"{server.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": SERVICE,
            "client_id": "revocation-test",
            "scope": scope,
        },
        timeout=HTTP_TIMEOUT,
    )


def bearer_token(server: RunningServer, credentials: tuple[str, str], scope: str) -> str:
    answer = httpx.get(
        f"{server.url}/token",
        params={"service": SERVICE, "scope": scope},
        auth=credentials,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def statuses(request: Callable[[], httpx.Response], repeats: int) -> list[int]:
    return [request().status_code for _ in range(repeats)]


def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Polls `check` until it holds; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
