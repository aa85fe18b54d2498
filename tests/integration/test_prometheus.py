"""A real Prometheus (Debian's package) scrapes a real `dockyard serve` (TLS, auth on, two HTTP workers
and the job runner) with the metrics token, under a short load: a push, a few pulls, a token, an API
call, a GC job. Every shipped alert rule (deploy/prometheus/alerts.yml) is then evaluated by Prometheus
itself without error, every metric they name has series, the request and latency series are there,
and every query of the Grafana dashboard (deploy/grafana/dockyard.json) returns series.

One module, one server, one Prometheus: it costs about 15 s.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.cli import run_dockyard
from tests.support.ociclient import OCIClient, describe
from tests.support.processes import stop_process
from tests.support.server import RunningServer, free_port, require_tool, start_server
from tests.support.timeouts import HTTP_TIMEOUT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dockyard.json"
# What Grafana puts in the dashboard's variables, for Prometheus's own query API.
GRAFANA_VALUES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$job": "dockyard"}
TOKEN = "prometheus-scrape-token-0123456789abcdef"
ADMIN = ("admin", "Prometheus-test-passw0rd")
PROJECT = "team"
SCRAPE_SECONDS = 1


@dataclass
class Setup:
    server: RunningServer
    prometheus: httpx.Client  # on Prometheus's HTTP API

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.prometheus.get("/api/v1/query", params={"query": expr})
        assert answer.status_code == 200, f"{expr}: {answer.text}"
        body = answer.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])


def make_load(server: RunningServer, ca: Path) -> None:
    """A push, pulls, a token, management calls, an upload left open and a GC run."""
    with httpx.Client(
        base_url=server.url,
        auth=ADMIN,
        verify=ssl.create_default_context(cafile=str(ca)),
        timeout=HTTP_TIMEOUT,
    ) as http:
        created = http.post("/api/v1/projects", json={"name": PROJECT})
        assert created.status_code == 201, describe(created)
        quota = http.put(f"/api/v1/projects/{PROJECT}/quota", json={"limit_bytes": 10_000_000})
        assert quota.status_code < 300, describe(quota)
        oci = OCIClient(http)
        pushed = oci.push_image(f"{PROJECT}/app", "v1")
        manifest = yaml.safe_load(pushed.body)  # JSON is YAML
        for _ in range(3):
            assert oci.get_manifest(f"{PROJECT}/app", "v1").status_code == 200
            layer = manifest["layers"][0]["digest"]
            assert oci.head_blob(f"{PROJECT}/app", layer).status_code == 200
            assert http.get(f"/v2/{PROJECT}/app/blobs/{layer}").status_code == 200
        assert oci.get_manifest(f"{PROJECT}/app", "missing").status_code == 404
        token = http.get("/token", params={"service": "dockyard", "scope": f"repository:{PROJECT}/app:pull"})
        assert token.status_code == 200, describe(token)
        oci.upload_location(f"{PROJECT}/app")  # left open: dockyard_upload_sessions_open
        job = http.post("/api/v1/jobs", json={"kind": "gc", "params": {"min_age": "0s"}})
        assert job.status_code == 201, describe(job)
        deadline = time.monotonic() + 60
        while (status := http.get(f"/api/v1/jobs/{job.json()['id']}").json()["status"]) not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status == "succeeded"


def prometheus_config(workdir: Path, server: RunningServer, ca: Path) -> Path:
    token_file = workdir / "dockyard-metrics-token"
    token_file.write_text(TOKEN)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "dockyard",  # the name alerts.yml expects
                "scheme": "https",
                "tls_config": {"ca_file": str(ca)},
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{"targets": [server.host]}],
            }
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    binary = require_tool("prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    certs = root / "certs"
    made = run_dockyard("cert", "127.0.0.1", "--out", certs)
    assert made.returncode == 0, made.stderr
    config = {
        "auth": {"enabled": True},
        "metrics": {"token": TOKEN},
        "http": {"workers": 2},
        "jobs": {"run_in_serve": True},
    }
    server = start_server(
        root / "server",
        config,
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
        tls=(certs / "server.crt", certs / "server.key"),
    )
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        make_load(server, certs / "ca.crt")
        listen = f"127.0.0.1:{free_port()}"
        log = (root / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={prometheus_config(root, server, certs / 'ca.crt')}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address={listen}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with httpx.Client(base_url=f"http://{listen}", timeout=HTTP_TIMEOUT) as api:
            setup = Setup(server, api)
            wait_for_scrapes(setup, prometheus, root / "prometheus.log")
            yield setup
    finally:
        if prometheus is not None:
            stop_process(prometheus)
        server.stop()


def wait_for_scrapes(setup: Setup, prometheus: subprocess.Popen[bytes], log: Path) -> None:
    """Until Prometheus has scraped dockyard a few times (rate() needs two samples) and evaluated
    the rules."""
    deadline = time.monotonic() + 60
    while True:
        assert prometheus.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no scrapes:\n{log.read_text(errors='replace')}"
        try:
            scraped = setup.query('count_over_time(up{job="dockyard"}[1m])')
            rules = setup.prometheus.get("/api/v1/rules").json()["data"]["groups"]
        except (httpx.HTTPError, AssertionError):
            scraped, rules = [], []
        # lastEvaluation is Go's zero time (year 0001) until the rules' first evaluation.
        evaluated = bool(rules) and not rules[0]["lastEvaluation"].startswith("0001")
        if scraped and int(scraped[0]["value"][1]) >= 3 and evaluated:
            return
        time.sleep(0.5)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: what is left when strings, matchers, ranges, numbers,
    functions and keywords are taken out."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*[^\sA-Za-z0-9_:(]|\s*$)", bare))
    keywords = {"by", "without", "on", "ignoring", "and", "or", "unless", "bool"}
    keywords |= {"le", "job", "kind", "project", "route"}  # labels in by (...)
    return {word for word in words if word not in keywords}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_prometheus_scrapes_dockyard_with_the_metrics_token(setup: Setup) -> None:
    (up,) = setup.query('up{job="dockyard"}')
    assert up["value"][1] == "1"
    health = setup.prometheus.get("/api/v1/targets").json()["data"]["activeTargets"][0]
    assert health["health"] == "up", health


def test_every_alert_rule_is_loaded_and_evaluates_without_error(setup: Setup) -> None:
    groups = setup.prometheus.get("/api/v1/rules").json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in alert_rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
    for rule in alert_rules():
        setup.query(rule["expr"])  # the query API accepts and evaluates it


def test_every_metric_the_alerts_read_has_series(setup: Setup) -> None:
    names = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    # A check on the parser above: it finds what the rules read, not PromQL's own words.
    assert {"up", "http_requests_total", "dockyard_filesystem_free_bytes", "jobs_finished_total"} <= names
    assert not names & {"sum", "rate", "histogram_quantile", "time", "increase", "max"}
    for name in sorted(names):
        if name == "jobs_finished_total":  # the GC job's success: failures have no series yet
            assert setup.query('jobs_finished_total{job="dockyard", kind="gc", status="succeeded"}'), name
            continue
        assert setup.query(f'{{__name__="{name}", job="dockyard"}}'), f"no series of {name}"


def test_request_rate_and_latency_series_exist_per_operation(setup: Setup) -> None:
    operations = {
        ("/v2/{name:path}/manifests/{reference}", "GET"),
        ("/v2/{name:path}/manifests/{reference}", "PUT"),
        ("/v2/{name:path}/blobs/{digest}", "GET"),
        ("/v2/{name:path}/blobs/{digest}", "HEAD"),
        ("/v2/{name:path}/blobs/uploads/", "POST"),
        ("/v2/{name:path}/blobs/uploads/{upload_id}", "PUT"),
        ("/token", "GET"),
        ("/api/v1/projects", "POST"),
    }
    rates = setup.query('sum by (route, method) (rate(http_requests_total{job="dockyard"}[1m]))')
    seen = {(series["metric"]["route"], series["metric"]["method"]) for series in rates}
    assert operations <= seen, operations - seen
    p99 = setup.query(
        "histogram_quantile(0.99, sum by (route, method, le) "
        '(rate(http_request_duration_seconds_bucket{job="dockyard"}[1m])))'
    )
    timed = {(series["metric"]["route"], series["metric"]["method"]) for series in p99}
    assert operations <= timed, operations - timed
    # The pull of a tag that does not exist, by cause.
    assert setup.query('registry_request_failures_total{operation="pull", code="MANIFEST_UNKNOWN"}')


def test_the_node_state_gauges_read_what_the_load_left(setup: Setup) -> None:
    def value(expr: str) -> float:
        (series,) = setup.query(expr)
        return float(series["value"][1])

    assert value('dockyard_ready{job="dockyard"}') == 1
    assert value('dockyard_up{job="dockyard", check="database"}') == 1
    assert value('dockyard_upload_sessions_open{job="dockyard"}') == 1
    assert value(f'dockyard_project_quota_limit_bytes{{job="dockyard", project="{PROJECT}"}}') == 10_000_000
    assert 0 < value(f'dockyard_project_quota_used_bytes{{job="dockyard", project="{PROJECT}"}}') < 10_000
    # `dockyard cert` writes a certificate valid for years; the GC job ran a moment ago.
    assert value('dockyard_tls_certificate_expiry_timestamp_seconds{job="dockyard"} - time()') > 14 * 86400
    assert value('time() - dockyard_gc_last_success_timestamp_seconds{job="dockyard"}') < 600
    assert value('dockyard_filesystem_free_bytes{job="dockyard", volume="storage"}') > 0
    # The database as the workers see it: statements timed, pools sampled (summed over the workers).
    assert value('database_query_duration_seconds_count{job="dockyard"}') > 0
    assert value('sum(database_pool_connections{job="dockyard"})') >= 1
    # Three pulls of one tag: the first may miss, the others hit.
    assert value('sum(cache_lookups_total{job="dockyard", cache="manifests_by_tag", result="hit"})') >= 1


def test_every_dashboard_query_returns_series(setup: Setup) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VALUES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (panel["title"], expr)
            assert setup.query(expr), f"{panel['title']}: no series for {expr}"
