"""Token buckets kept by one process (`interfaces.TokenBuckets`): the request limits of a registry
without Redis, where each worker process limits on its own. `buckets_redis.RedisBuckets` shares
them with every worker and node; `conformance.TokenBucketsConformance` checks both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dockyard.coordination.interfaces import check_bucket

MAX_BUCKETS = 100_000  # keys remembered at most: a flood of new addresses cannot grow memory for good


class InProcessBuckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = MAX_BUCKETS) -> None:
        self.clock = clock
        self.max_buckets = max_buckets
        # key -> [tokens, when counted, when full again]
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: float, burst: int) -> float:
        check_bucket(rate, burst)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_buckets:
                    self._forget_full(now)
                tokens = float(burst)
            else:
                tokens = min(float(burst), bucket[0] + max(0.0, now - bucket[1]) * rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate
            self._buckets[key] = [tokens, now, now + (burst - tokens) / rate]
            return wait

    def _forget_full(self, now: float) -> None:
        """Forget the buckets that are full again (the same answer as remembering them); if that is
        not enough, the oldest half: a forgotten bucket is full, so this errs towards letting through."""
        for key in [key for key, bucket in self._buckets.items() if bucket[2] <= now]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_buckets:
            for key in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
