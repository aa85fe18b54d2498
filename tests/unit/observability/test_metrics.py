from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dockyard.observability.metrics import Metrics


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def test_several_apps_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("/v2/{name:path}/blobs/{digest}", "GET", 200, 0.003, 0, 1000)
    first.observe_request("/v2/{name:path}/blobs/{digest}", "GET", 200, 0.004, 0, 500)
    first.observe_request("/v2/{name:path}/blobs/uploads/", "POST", 202, 0.001, 12, 0)
    second.observe_request("/v2/", "GET", 401, 0.0002, 0, 0)
    first.uploads_started.inc()
    first.blob_bytes_received.inc(12)

    body, content_type = first.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    blobs = {"route": "/v2/{name:path}/blobs/{digest}"}
    assert value(text, "http_requests_total", **blobs, method="GET", status="200") == 2
    assert value(text, "http_response_bytes_total", **blobs) == 1500
    assert value(text, "http_request_bytes_total", route="/v2/{name:path}/blobs/uploads/") == 12
    assert value(text, "http_request_duration_seconds_count", **blobs, method="GET") == 2
    assert value(text, "http_request_duration_seconds_bucket", **blobs, method="GET", le="0.005") == 2
    assert value(text, "http_request_duration_seconds_bucket", **blobs, method="GET", le="0.0025") == 0
    assert value(text, "uploads_started_total") == 1
    assert value(text, "blob_bytes_received_total") == 12
    assert value(text, "http_requests_total", route="/v2/", method="GET", status="401") is None

    other = second.render()[0].decode()
    assert value(other, "http_requests_total", route="/v2/", method="GET", status="401") == 1
    assert value(other, "uploads_started_total") == 0


def test_duration_buckets_span_half_a_millisecond_to_a_minute() -> None:
    metrics = Metrics()
    metrics.observe_request("/v2/", "GET", 200, 0.0001, 0, 0)
    text = metrics.render()[0].decode()
    bounds = sorted(
        float(labels["le"])
        for (name, label_set), _ in samples(text).items()
        if name == "http_request_duration_seconds_bucket"
        for labels in [dict(label_set)]
        if labels["le"] != "+Inf"
    )
    assert bounds[0] == 0.0005
    assert bounds[-1] == 60.0


# Run in a fresh interpreter: the parent imports prometheus_client first (as `dockyard serve` does), then
# switches to multiprocess mode and forks workers, the way Granian starts them.
MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from pathlib import Path
    from dockyard.observability.metrics import Metrics, prepare_multiprocess, render

    prepare_multiprocess(Path(sys.argv[1]))

    def worker(requests):
        metrics = Metrics()  # each worker's app builds its own
        for _ in range(requests):
            metrics.observe_request("/v2/", "GET", 200, 0.002, 0, 10)
        metrics.uploads_completed.inc()
        metrics.blob_bytes_sent.inc(100 * requests)
        metrics.flush()  # as the app does at shutdown

    workers = [multiprocessing.get_context("fork").Process(target=worker, args=(n,)) for n in (3, 4, 5)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
        assert process.exitcode == 0
    sys.stdout.write(render()[0].decode())
    """
)


def test_multiprocess_mode_adds_up_every_worker_and_forgets_earlier_runs(tmp_path: Path) -> None:
    for _run in range(2):
        result = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(tmp_path / "metrics")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        text = result.stdout
        assert value(text, "http_requests_total", route="/v2/", method="GET", status="200") == 12
        assert value(text, "http_response_bytes_total", route="/v2/") == 120
        assert value(text, "http_request_duration_seconds_count", route="/v2/", method="GET") == 12
        assert value(text, "uploads_completed_total") == 3
        assert value(text, "blob_bytes_sent_total") == 1200


class _Cache:
    def __init__(self) -> None:
        self.lookups = 0
        self.hits = 0


def test_cache_hits_and_misses_are_counted_from_the_caches_totals() -> None:
    metrics = Metrics()
    cache = _Cache()
    metrics.watch_caches({"manifests_by_tag": cache})

    def counted() -> dict[str, float]:
        text = metrics.render()[0].decode()
        return {
            sample.labels["result"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "cache_lookups_total" and sample.labels["cache"] == "manifests_by_tag"
        }

    assert counted() == {"hit": 0, "miss": 0}  # the series exist before the first get
    cache.lookups, cache.hits = 10, 7
    assert counted() == {"hit": 7, "miss": 3}
    cache.lookups, cache.hits = 12, 9  # only what is new since the last flush is added
    assert counted() == {"hit": 9, "miss": 3}
