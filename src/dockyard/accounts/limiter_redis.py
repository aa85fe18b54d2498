"""Failed-login counts shared by every worker and node through Redis, falling back to this process.

The same three counts as `InProcessLoginLimiter` (per address, per address and account, per
account), each a counter key: a failure INCRs it and starts its expiry at the first failure, so the
window is fixed from the first failure (registry-wide) rather than sliding. Failures are counted in
this process too, so if Redis goes away the local limiter already knows this process's recent
failures and takes over.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis

from dockyard.accounts.interfaces import LoginStanding
from dockyard.accounts.limiter import InProcessLoginLimiter, account_of, address_of

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
        per_address: int | None = None,
        per_account: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._window_ms = max(1, math.ceil(window_seconds * 1000))
        self._local = InProcessLoginLimiter(
            max_failures, window_seconds, per_address=per_address, per_account=per_account, clock=clock
        )
        self._thresholds = self._local.thresholds
        self._clock = clock
        self._last_warning = -math.inf

    def standing(self, username: str, client_ip: str | None) -> LoginStanding:
        try:
            counts = self._client.mget(keys(username, client_ip))
        except redis.RedisError as exc:
            self._warn(exc)
            return self._local.standing(username, client_ip)
        address, pair, account = (int(count or 0) for count in counts)
        return self._thresholds.standing(address, pair, account)

    def failed(self, username: str | None, client_ip: str | None) -> None:
        self._local.failed(username, client_ip)
        counted = keys(username, client_ip) if username is not None else keys("", client_ip)[:1]
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in counted:
                # The window starts at the first failure (SET NX PX, not EXPIRE NX: Redis < 7 too).
                pipe.set(key, 0, nx=True, px=self._window_ms)
                pipe.incr(key)  # keeps the key's expiry
            pipe.execute()
        except redis.RedisError as exc:
            self._warn(exc)

    def succeeded(self, username: str, client_ip: str | None) -> None:
        self._local.succeeded(username, client_ip)
        try:
            self._client.delete(keys(username, client_ip)[1])
        except redis.RedisError as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._last_warning >= _WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("Redis unreachable (%s): counting failed logins in this process only", exc)


def keys(username: str, client_ip: str | None) -> list[str]:
    """The address's, the pair's and the account's counter keys, in the order `standing` reads them."""
    address, account = address_of(client_ip), account_of(username)
    # An address never holds "/", so the pair key cannot be confused whatever the username.
    return [
        f"{KEY_PREFIX}ip:{address}",
        f"{KEY_PREFIX}pair:{address}/{account}",
        f"{KEY_PREFIX}account:{account}",
    ]
