"""Gauges a scrape computes from the node's state, not from requests: backend checks, free space, the
TLS certificate's expiry.

They cost nothing on the request path: each scrape (every 15 s or so) runs them once, in the worker
that answers it. Every value is the same whichever worker answers, so there is nothing to add up across
processes. A check that fails or hangs reads 0 (bounded by a timeout), and /metrics still answers: an
alert on `dockyard_up{check="database"} == 0` needs the scrape to succeed while the database is down.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Check = Callable[[], None]  # raises when the backend is not usable
CHECK_TIMEOUT_SECONDS = 3.0
log = logging.getLogger("dockyard.metrics")


class StateCollector(Collector):
    """`dockyard_up{check}`, `dockyard_ready`, `dockyard_check_duration_seconds{check}`,
    `dockyard_filesystem_{free,size}_bytes{volume}` and `dockyard_tls_certificate_expiry_timestamp_seconds`.

    `checks` are /readyz's (database, storage, redis); `required` those that make the node unready when
    they fail (Redis is optional: a node serves without it). `volumes` names local directories whose
    filesystem's space to report ("storage", "database").
    """

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        required: Iterable[str] = (),
        volumes: Mapping[str, Path] | None = None,
        certificate: Path | None = None,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.checks = dict(checks)
        self.required = frozenset(required)
        self.volumes = dict(volumes or {})
        self.certificate = certificate
        self.timeout = timeout
        # A check still running from the last scrape (a backend that does not answer) is not started
        # again: scrapes cannot pile up threads on a hung database.
        self._executor = ThreadPoolExecutor(max_workers=max(1, len(self.checks)), thread_name_prefix="scrape")
        self._running: dict[str, Future[float]] = {}

    def collect(self) -> Iterable[Metric]:
        yield from self._check_families()
        yield from self._filesystem_families()
        if self.certificate is not None:
            yield from self._certificate_family(self.certificate)

    def exposition(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)

    # --- backend checks ----------------------------------------------------------------------
    def _check_families(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "dockyard_up", "1 when the backend answers /readyz's check, else 0.", labels=["check"]
        )
        took = GaugeMetricFamily(
            "dockyard_check_duration_seconds",
            "How long the backend's check took at this scrape (a database round trip for `database`).",
            labels=["check"],
        )
        futures = {name: self._start(name, check) for name, check in self.checks.items()}
        ready = True
        for name, future in futures.items():
            seconds = self._wait(name, future)
            up.add_metric([name], 0.0 if seconds is None else 1.0)
            if seconds is not None:
                took.add_metric([name], seconds)
            elif name in self.required:
                ready = False
        yield up
        yield took
        yield GaugeMetricFamily(
            "dockyard_ready",
            "1 when every required backend answers (what /readyz says), else 0.",
            value=float(ready),
        )

    def _start(self, name: str, check: Check) -> Future[float]:
        future = self._running.get(name)
        if future is None or future.done():
            future = self._running[name] = self._executor.submit(_timed, check)
        return future

    def _wait(self, name: str, future: Future[float]) -> float | None:
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            log.warning("metrics: check %s timed out after %gs", name, self.timeout)
        except Exception as exc:  # any failure reads as down
            log.warning("metrics: check %s failed: %s", name, exc)
        return None

    # --- disks and certificate ---------------------------------------------------------------
    def _filesystem_families(self) -> Iterable[Metric]:
        free = GaugeMetricFamily(
            "dockyard_filesystem_free_bytes",
            "Bytes available to dockyard on the filesystem behind the volume.",
            labels=["volume"],
        )
        size = GaugeMetricFamily(
            "dockyard_filesystem_size_bytes", "Size of the filesystem behind the volume.", labels=["volume"]
        )
        for volume, path in sorted(self.volumes.items()):
            try:
                stats = os.statvfs(path)
            except OSError as exc:  # a missing directory: no sample, and the alert sees absent()
                log.warning("metrics: cannot stat %s volume %s: %s", volume, path, exc)
                continue
            free.add_metric([volume], float(stats.f_bavail * stats.f_frsize))
            size.add_metric([volume], float(stats.f_blocks * stats.f_frsize))
        yield free
        yield size

    @staticmethod
    def _certificate_family(path: Path) -> Iterable[Metric]:
        from cryptography import x509  # at the first scrape, and only where TLS is served

        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("metrics: cannot read TLS certificate %s: %s", path, exc)
            return
        yield GaugeMetricFamily(
            "dockyard_tls_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate (http.tls.certificate, as on disk now) expires, Unix seconds.",
            value=certificate.not_valid_after_utc.timestamp(),
        )


def _timed(check: Check) -> float:
    started = time.perf_counter()
    check()
    return time.perf_counter() - started
