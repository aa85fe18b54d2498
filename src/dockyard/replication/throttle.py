"""A replication run's bandwidth limit (`Policy.bandwidth`), shared by its concurrent blob copies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

THROTTLE_SLICE = 0.5  # seconds a throttled copy sleeps between looks at the cancel flag


class Throttle:
    """A run's bandwidth: bytes leave at `rate` per second on average, with up to `burst` seconds'
    worth sent at once after a pause. Thread-safe; `take` says how long the caller must wait."""

    def __init__(self, rate: int, burst: float = 1.0, clock: Callable[[], float] | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock or time.monotonic
        self._next: float | None = None  # when the bytes taken so far are due
        self._lock = threading.Lock()

    def take(self, amount: int) -> float:
        with self._lock:
            now = self._clock()
            earliest = now - self.burst
            if self._next is None or self._next < earliest:
                self._next = earliest
            self._next += amount / self.rate
            return max(0.0, self._next - now)
