"""Basic credentials on the management API are remembered as on /v2: scripts send the password with
every call, and the real argon2id check (counted through a wrapping hasher) runs once for them, not
once per call. Wrong passwords are never remembered and still count against the login limit; a
change announced on the AUTH feed (as every successful API write announces one) is honoured at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.routing import Mount

from dockyard.accounts import passwords
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.sessions import LoginSessionService
from dockyard.api.auth_changes import AnnounceWrites
from dockyard.api.management import MOUNT_PATH, ManagementServices, SystemInfo, create_management_app
from dockyard.api.management.sessions import SessionCodec
from dockyard.audit.services import AuditLog
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.remembered import DEFAULT_TTL, RememberedLogins
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.coordination.interfaces import Topic
from dockyard.registry.queries import RegistryQueries
from dockyard.storage.driver import build_driver
from tests.support.registry import registry_parts
from tests.unit.accounts.fixtures import FakeClock, Services, migrated_database

ADMIN = ("admin", "admin-password-for-basic-1")
ALICE = ("alice", "alice-password-for-basic-1")
MAX_FAILURES = 3


class CountingHasher(PasswordHasher):
    """The real argon2id hasher with the production parameters, counting verifies."""

    def __init__(self) -> None:
        real = passwords.password_hasher()
        super().__init__(real.time_cost, real.memory_cost, real.parallelism, real.hash_len, real.salt_len)
        self.lock = threading.Lock()
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self.lock:
            self.verifies += 1
        return super().verify(hash, password)


class Api:
    """httpx against the ASGI app, one event loop for the whole test (as a server process has)."""

    def __init__(self, app: Any) -> None:
        self.runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://dockyard.test" + MOUNT_PATH)

    def get(self, path: str, auth: tuple[str, str]) -> httpx.Response:
        return self.runner.run(self.http.get(path, auth=auth))

    def put(self, path: str, auth: tuple[str, str], body: dict[str, Any]) -> httpx.Response:
        return self.runner.run(self.http.put(path, auth=auth, json=body))

    def patch(self, path: str, auth: tuple[str, str], body: dict[str, Any]) -> httpx.Response:
        return self.runner.run(self.http.patch(path, auth=auth, json=body))

    def burst(self, path: str, auth: tuple[str, str], count: int) -> list[int]:
        async def all_at_once() -> list[httpx.Response]:
            return list(await asyncio.gather(*(self.http.get(path, auth=auth) for _ in range(count))))

        return [response.status_code for response in self.runner.run(all_at_once())]

    def close(self) -> None:
        self.runner.run(self.http.aclose())
        self.runner.close()


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", counting)
    return counting


@pytest.fixture
def api(tmp_path: Path, hasher: CountingHasher) -> Iterator[Api]:
    """Wired as the composition root wires it: the remembered logins follow the AUTH topic, and every
    successful write under the API bumps it."""
    db = migrated_database(tmp_path)
    driver = build_driver("inmemory")
    feed = InProcessChangeFeed()
    parts = registry_parts(db, driver, feed)
    services = Services.on(db)
    services.users.create(*ADMIN, admin=True)
    services.users.create(*ALICE)
    limiter = InProcessLoginLimiter(MAX_FAILURES, 60, clock=FakeClock())
    authenticator = LocalAuthenticator(
        services.users, services.groups, services.tokens, services.robots, limiter
    )
    audit = AuditLog(db, flush_interval=0.05)
    management = ManagementServices(
        db=db,
        driver=driver,
        registry=parts.registry,
        queries=RegistryQueries(db),
        quotas=parts.quotas,
        immutability=parts.immutability,
        system=SystemInfo("0.1.0", "inmemory", "dockyard", False, False, True),
        authenticator=authenticator,
        sessions=SessionCodec(b"k" * 32),
        login_sessions=LoginSessionService(db),
        policy=AccessPolicy(db),
        users=services.users,
        personal_tokens=services.tokens,
        robots=services.robots,
        robot_access=services.robot_access,
        projects=services.projects,
        members=services.members,
        audit=audit,
        logins=RememberedLogins(
            authenticator, DEFAULT_TTL, 100, time.time, generation=lambda: feed.generation(Topic.AUTH)
        ),
    )
    announcing = AnnounceWrites(create_management_app(management), lambda: feed.bump(Topic.AUTH))
    client = Api(Starlette(routes=[Mount(MOUNT_PATH, app=announcing)]))
    hasher.verifies = 0  # creating the accounts hashed nothing worth counting, but start clean
    yield client
    client.close()
    audit.close()
    db.dispose()


def test_twenty_calls_with_the_same_basic_credentials_hash_the_password_once(
    api: Api, hasher: CountingHasher
) -> None:
    for _ in range(20):
        answer = api.get("/me", ALICE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["name"] == "alice"
    assert hasher.verifies == 1


def test_a_burst_of_calls_with_new_credentials_shares_one_check(api: Api, hasher: CountingHasher) -> None:
    assert api.burst("/me", ALICE, 12) == [200] * 12
    assert hasher.verifies == 1


def test_a_wrong_password_is_never_remembered_and_counts_against_the_limit(
    api: Api, hasher: CountingHasher
) -> None:
    assert api.get("/me", ALICE).status_code == 200
    wrong = (ALICE[0], "not-alice-password")
    for attempt in range(1, MAX_FAILURES + 1):
        assert api.get("/me", wrong).status_code == 401
        assert hasher.verifies == 1 + attempt  # each wrong attempt is checked, none remembered
    # The limit is reached: a further attempt is refused without a hash, as a lockout is.
    assert api.get("/me", wrong).status_code == 401
    assert hasher.verifies == 1 + MAX_FAILURES


def test_a_changed_password_refuses_the_old_one_at_once(api: Api) -> None:
    assert api.get("/me", ALICE).status_code == 200
    new_password = "alice-new-password-for-basic-2"
    change = {"current_password": ALICE[1], "new_password": new_password}
    assert api.put("/me/password", ALICE, change).status_code == 204
    assert api.get("/me", ALICE).status_code == 401
    assert api.get("/me", (ALICE[0], new_password)).status_code == 200


def test_a_disabled_user_is_refused_at_once(api: Api) -> None:
    assert api.get("/me", ALICE).status_code == 200
    assert api.patch("/users/alice", ADMIN, {"disabled": True}).status_code == 200
    assert api.get("/me", ALICE).status_code == 401
