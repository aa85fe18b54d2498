"""A burst of requests with the same new Basic credentials runs one password check, not one each
(each argon2 check costs 7 MiB and a core for ~25 ms)."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind
from dockyard.auth.remembered import RememberedLogins


class CountingAuthenticator:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        with self.lock:
            self.calls += 1
        time.sleep(0.05)  # a slow hash
        if secret != "right":
            raise AuthenticationFailed()
        return Principal(PrincipalKind.USER, username, id=1)


def _raw(username: str, secret: str) -> bytes:
    return base64.b64encode(f"{username}:{secret}".encode())


def test_concurrent_checks_of_the_same_credentials_share_one_check() -> None:
    authenticator = CountingAuthenticator()
    credentials = RememberedLogins(authenticator, ttl=30, max_entries=100, clock=time.time)

    async def burst() -> list[Principal | None]:
        return await asyncio.gather(*(credentials.principal(_raw("alice", "right"), None) for _ in range(20)))

    results = asyncio.run(burst())
    assert authenticator.calls == 1
    assert all(result is not None and result.name == "alice" for result in results)


def test_failures_are_shared_by_the_burst_but_not_remembered() -> None:
    authenticator = CountingAuthenticator()
    credentials = RememberedLogins(authenticator, ttl=30, max_entries=100, clock=time.time)

    async def burst() -> list[Principal | None]:
        return await asyncio.gather(*(credentials.principal(_raw("alice", "wrong"), None) for _ in range(10)))

    assert asyncio.run(burst()) == [None] * 10
    assert authenticator.calls == 1
    assert asyncio.run(credentials.principal(_raw("alice", "wrong"), None)) is None
    assert authenticator.calls == 2  # the next attempt is checked (and counted by the limiter) again
