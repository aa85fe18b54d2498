"""`dockyard doctor slow`: per-route latency from metrics text that prometheus_client itself wrote, with
the buckets dockyard's request histogram uses."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dockyard.maintenance.slow import route_latencies, slow_findings
from dockyard.observability.metrics import DURATION_BUCKETS

pytestmark = pytest.mark.db_independent


def _metrics(observations: dict[tuple[str, str], list[float]]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram(
        "http_request_duration_seconds", "", ["route", "method"], buckets=DURATION_BUCKETS, registry=registry
    )
    Counter("http_requests", "", ["route"], registry=registry).labels("/v2/").inc()  # not a histogram
    for (route, method), seconds in observations.items():
        for value in seconds:
            histogram.labels(route, method).observe(value)
    return generate_latest(registry).decode()


def test_the_slowest_route_comes_first_with_its_figures() -> None:
    text = _metrics(
        {
            ("/v2/{name}/manifests/{reference}", "GET"): [0.004] * 99 + [0.2],
            ("/v2/{name}/blobs/uploads/{uuid}", "PUT"): [0.5] * 10 + [3.0] * 10,
        }
    )

    latencies = route_latencies(text)
    findings = slow_findings(latencies)

    assert [f"{r.method} {r.route}" for r in latencies] == [
        "PUT /v2/{name}/blobs/uploads/{uuid}",
        "GET /v2/{name}/manifests/{reference}",
    ]
    uploads, manifests = latencies
    assert uploads.count == 20 and uploads.mean_seconds == pytest.approx(1.75)
    assert 2.5 <= uploads.quantile(0.95) <= 5.0  # inside the bucket 3.0 falls in
    assert manifests.quantile(0.95) <= 0.005
    assert findings[0].verdict == "WARN" and findings[0].summary.startswith("20 requests, mean 1750 ms")
    assert findings[1].verdict == "OK"


def test_no_requests_yet() -> None:
    assert slow_findings(route_latencies(_metrics({})))[0].summary.startswith("no requests recorded yet")
