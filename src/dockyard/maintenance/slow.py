"""`dockyard doctor slow`: which requests are slow, from the server's own metrics.

The input is what `GET /metrics` answers (Prometheus text): `http_request_duration_seconds`, a histogram
by route and method. Counters run from the server's start, so the figures cover its whole uptime. The
95th percentile is estimated from the buckets as Prometheus' `histogram_quantile` does (linear within the
bucket it falls in), so it is as coarse as the buckets are.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from dockyard.maintenance.doctor import Finding

HISTOGRAM = "http_request_duration_seconds"
SLOW_P95_SECONDS = 1.0  # a route whose 95th percentile is past this is reported as a warning


@dataclass
class RouteLatency:
    route: str
    method: str
    count: float = 0.0
    total_seconds: float = 0.0
    buckets: list[tuple[float, float]] = field(default_factory=list)  # (upper bound, cumulative count)

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The q-quantile, interpolated within its bucket (histogram_quantile's estimate)."""
        ordered = sorted(self.buckets)
        if not ordered or not self.count:
            return 0.0
        rank = q * ordered[-1][1]
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in ordered:
            if cumulative >= rank:
                if math.isinf(bound):  # past the last finite bucket: its bound is all we know
                    return lower_bound
                span = cumulative - lower_count
                return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
            lower_bound, lower_count = bound, cumulative
        return lower_bound


def route_latencies(metrics_text: str) -> list[RouteLatency]:
    """Every route with requests, slowest 95th percentile first."""
    routes: dict[tuple[str, str], RouteLatency] = {}
    counts: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(metrics_text):
        if family.name != HISTOGRAM:
            continue
        for sample in family.samples:
            key = (sample.labels.get("route", "?"), sample.labels.get("method", "?"))
            latency = routes.setdefault(key, RouteLatency(*key))
            if sample.name.endswith("_count"):
                latency.count += sample.value
            elif sample.name.endswith("_sum"):
                latency.total_seconds += sample.value
            elif sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                # Several processes' series of one route (multiprocess mode) add up.
                counts[key][bound] = counts[key].get(bound, 0.0) + sample.value
    for key, latency in routes.items():
        latency.buckets = sorted(counts[key].items())
    found = [latency for latency in routes.values() if latency.count]
    return sorted(found, key=lambda r: (-r.quantile(0.95), -r.total_seconds, r.route))


def slow_findings(latencies: list[RouteLatency], top: int = 10) -> list[Finding]:
    if not latencies:
        return [Finding("requests", "OK", "no requests recorded yet (the figures start with the server).")]
    findings = []
    for latency in latencies[:top]:
        p95 = latency.quantile(0.95)
        slow = p95 > SLOW_P95_SECONDS
        findings.append(
            Finding(
                f"{latency.method} {latency.route}",
                "WARN" if slow else "OK",
                f"{latency.count:.0f} requests, mean {_ms(latency.mean_seconds)}, 95% under "
                f"{_ms(p95)}, {latency.total_seconds:.1f} s in all.",
                "see where the time goes: database_query_duration_seconds, the storage, the client's link."
                if slow
                else "",
            )
        )
    return findings


def _ms(seconds: float) -> str:
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
