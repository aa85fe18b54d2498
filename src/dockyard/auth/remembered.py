"""Remembered Basic logins: one class for every way in that takes `Authorization: Basic` on each
request (the /v2 gate and the management API), so they share one TTL, one keying, one invalidation.

A success is remembered for `ttl` seconds under the SHA-256 of the client address and the header's
credentials (never the secret itself): another address, one the login limits may be refusing, is
checked (and limited) as ever, never let in by somebody else's remembered success. The cache follows
the change feed's AUTH topic (`generation`), so a disabled user, deleted robot or changed password is
refused as soon as any process announces the change. Concurrent requests with the same credentials
from the same address share one check. Failures are never remembered: each new attempt is checked,
and counted by the authenticator's login limits, once per check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable

import anyio.to_thread

from dockyard.auth.interfaces import AuthenticationFailed, Authenticator, Principal
from dockyard.auth.singleflight import AsyncSingleFlight
from dockyard.coordination.caches import GenerationCache, entries
from dockyard.coordination.interfaces import Generation

DEFAULT_TTL = 30.0  # seconds; argon2 and bcrypt are slow on purpose, a revocation comes by the feed


class RememberedLogins:
    """Checks Basic credentials with an Authenticator (in a worker thread: password hashes are slow
    on purpose), remembering successes briefly. Concurrent requests with the same credentials share
    one check (a client's burst with new credentials costs one hash, not one per connection), its
    failure included; failures are not remembered beyond that. Use from one event loop per process."""

    def __init__(
        self,
        authenticator: Authenticator,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float],
        generation: Generation | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.ttl = ttl
        self.clock = clock
        self.cache = GenerationCache[bytes, Principal](generation, entries(max_entries), clock=clock)
        self.in_flight = AsyncSingleFlight[Principal | None]()

    async def principal(self, raw: bytes, client_ip: str | None) -> Principal | None:
        """The principal for the base64 part of a Basic header, or None (malformed or refused).
        An unavailable directory (DirectoryUnavailable) is raised, not taken for a refusal."""
        key = remembered_key(client_ip, raw)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return await self.in_flight.run(key, lambda: self._check_and_remember(key, raw, client_ip))

    async def _check_and_remember(self, key: bytes, raw: bytes, client_ip: str | None) -> Principal | None:
        noted = self.cache.current_generation()
        principal = await self._check(raw, client_ip)
        if principal is not None:
            self.cache.put(key, principal, noted, self.clock() + self.ttl)
        return principal

    async def _check(self, raw: bytes, client_ip: str | None) -> Principal | None:
        pair = decode_basic(raw)
        if pair is None:
            return None
        try:
            return await anyio.to_thread.run_sync(
                self.authenticator.authenticate, pair[0], pair[1], client_ip
            )
        except AuthenticationFailed:
            return None


def decode_basic(raw: bytes) -> tuple[str, str] | None:
    """(username, secret) from the base64 part of a Basic Authorization header, or None."""
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, sep, secret = text.partition(":")
    if not sep or not username or not secret:
        return None
    return username, secret


def remembered_key(client_ip: str | None, credentials: bytes) -> bytes:
    """What a success is remembered under: per address, so the login limits of others still hold."""
    return hashlib.sha256((client_ip or "").encode() + b"\0" + credentials).digest()
