"""Failed-login counting in this process, in a sliding window, aimed at the guesser, not the owner.

Three counts (see `LoginLimiter` in accounts/interfaces.py for what each refuses):
- per client address, whatever the accounts: password spraying from one place;
- per client address and account: guessing one account's password from one place;
- per account, from every address: a guesser with many addresses. Past this limit only addresses that
  have themselves failed for the account are refused, so the owner logging in from anywhere else is
  never locked out by somebody else's guesses.

Robot secrets never count against their account (the authenticator passes no account): they are long
and random, so only the guessing address is slowed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from dockyard.accounts.interfaces import LoginStanding

Key = tuple[str, ...]


class LoginThresholds:
    """How many failures within the window each count allows (shared by both limiters)."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        per_address: int | None = None,
        per_account: int | None = None,
    ) -> None:
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures must be >= 1 and the window positive")
        self.pair = max_failures
        self.window = window_seconds
        # An address may fail for several accounts (a shared NAT, a user unsure of their name), so it
        # gets more than one account's worth; an account under attack from many addresses, more still.
        self.address = per_address if per_address is not None else 3 * max_failures
        self.account = per_account if per_account is not None else 10 * max_failures
        if self.address < 1 or self.account < 1:
            raise ValueError("the per-address and per-account limits must be >= 1")

    def standing(self, address_count: int, pair_count: int, account_count: int) -> LoginStanding:
        if address_count >= self.address:
            return LoginStanding.ADDRESS_BLOCKED
        if pair_count >= self.pair or (pair_count > 0 and account_count >= self.account):
            return LoginStanding.ACCOUNT_GUARDED
        return LoginStanding.OPEN


def address_of(client_ip: str | None) -> str:
    # Without an address (a Unix socket, a test) every such client counts as one address.
    return client_ip or "-"


def account_of(username: str) -> str:
    # "Admin" and "admin" are one account (usernames are unique whatever their case).
    return username.casefold()


class InProcessLoginLimiter:
    """Implements `LoginLimiter`. Memory is bounded: at most `max_keys` counts are kept, the least
    recently failed ones are forgotten first."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        per_address: int | None = None,
        per_account: int | None = None,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thresholds = LoginThresholds(max_failures, window_seconds, per_address, per_account)
        self._window = window_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def standing(self, username: str, client_ip: str | None) -> LoginStanding:
        address, account = address_of(client_ip), account_of(username)
        now = self._clock()
        with self._lock:
            counts = (self._recent(key, now) for key in _keys(address, account))
            return self.thresholds.standing(*counts)

    def failed(self, username: str | None, client_ip: str | None) -> None:
        address = address_of(client_ip)
        keys = _keys(address, account_of(username)) if username is not None else [("ip", address)]
        now = self._clock()
        with self._lock:
            for key in keys:
                times = self._failures.pop(key, None) or deque(maxlen=self._longest_count(key))
                times.append(now)
                self._failures[key] = times  # most recently failed last
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, username: str, client_ip: str | None) -> None:
        with self._lock:
            self._failures.pop(_pair_key(address_of(client_ip), account_of(username)), None)

    def _longest_count(self, key: Key) -> int:
        limits = {"ip": self.thresholds.address, "pair": self.thresholds.pair}
        return limits.get(key[0], self.thresholds.account)

    def _recent(self, key: Key, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)


def _pair_key(address: str, account: str) -> Key:
    return ("pair", address, account)


def _keys(address: str, account: str) -> list[Key]:
    """The address's, the pair's and the account's keys, in the order `standing` takes them."""
    return [("ip", address), _pair_key(address, account), ("account", account)]
