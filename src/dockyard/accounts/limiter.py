"""Failed-login counting in this process: per username and per client address, in a sliding window."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class InProcessLoginLimiter:
    """Implements `LoginLimiter`. Memory is bounded: at most `max_keys` usernames and addresses are
    tracked, the least recently failed ones are forgotten first."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures must be >= 1 and the window positive")
        self._max_failures = max_failures
        self._window = window_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allowed(self, username: str, client_ip: str | None) -> bool:
        now = self._clock()
        with self._lock:
            return all(self._recent(key, now) < self._max_failures for key in _keys(username, client_ip))

    def failed(self, username: str, client_ip: str | None) -> None:
        now = self._clock()
        with self._lock:
            for key in _keys(username, client_ip):
                times = self._failures.pop(key, None) or deque(maxlen=self._max_failures)
                times.append(now)
                self._failures[key] = times  # most recently failed last
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, username: str, client_ip: str | None) -> None:
        with self._lock:
            self._failures.pop(("user", _user_key(username)), None)

    def _recent(self, key: tuple[str, str], now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)


def _user_key(username: str) -> str:
    # "Admin" and "admin" are one target for a password sprayer, whatever the DB's collation.
    return username.casefold()


def _keys(username: str, client_ip: str | None) -> list[tuple[str, str]]:
    keys = [("user", _user_key(username))]
    if client_ip:
        keys.append(("ip", client_ip))
    return keys
