"""Failed-login counts shared by every worker and node through Redis, falling back to this process.

Each username and client address has a counter key: a failure INCRs it and starts its expiry at the
first failure, so the window is fixed from the first failure (registry-wide) rather than sliding as in
`InProcessLoginLimiter`. Failures are counted in this process too, so if Redis goes away the local
limiter already knows this process's recent failures and takes over.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis

from dockyard.accounts.limiter import InProcessLoginLimiter

log = logging.getLogger("dockyard.accounts.limiter")

KEY_PREFIX = "dockyard:login-failures:"
_WARN_EVERY_SECONDS = 60.0  # one log line a minute while Redis is away, not one per login


class RedisLoginLimiter:
    """Implements `LoginLimiter`."""

    def __init__(
        self,
        client: redis.Redis,
        max_failures: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_failures = max_failures
        self._window_ms = max(1, math.ceil(window_seconds * 1000))
        self._local = InProcessLoginLimiter(max_failures, window_seconds, clock=clock)
        self._clock = clock
        self._last_warning = -math.inf

    def allowed(self, username: str, client_ip: str | None) -> bool:
        try:
            counts = self._client.mget(_keys(username, client_ip))
        except redis.RedisError as exc:
            self._warn(exc)
            return self._local.allowed(username, client_ip)
        return all(int(count or 0) < self._max_failures for count in counts)

    def failed(self, username: str, client_ip: str | None) -> None:
        self._local.failed(username, client_ip)
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in _keys(username, client_ip):
                # The window starts at the first failure (SET NX PX, not EXPIRE NX: Redis < 7 too).
                pipe.set(key, 0, nx=True, px=self._window_ms)
                pipe.incr(key)  # keeps the key's expiry
            pipe.execute()
        except redis.RedisError as exc:
            self._warn(exc)

    def succeeded(self, username: str, client_ip: str | None) -> None:
        self._local.succeeded(username, client_ip)
        try:
            self._client.delete(_keys(username, None)[0])
        except redis.RedisError as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._last_warning >= _WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("Redis unreachable (%s): counting failed logins in this process only", exc)


def _keys(username: str, client_ip: str | None) -> list[str]:
    # casefold: "Admin" and "admin" are one target for a password sprayer, as in the local limiter.
    keys = [f"{KEY_PREFIX}user:{username.casefold()}"]
    if client_ip:
        keys.append(f"{KEY_PREFIX}ip:{client_ip}")
    return keys
