"""The shipped Grafana dashboard (deploy/grafana/dockyard.json) is one Grafana can import: its
structure, layout, variables and queries. Grafana is not installable here; every panel query is
evaluated against a real Prometheus scraping a real dockyard in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "dockyard.json"
PANEL_TYPES = {"row", "timeseries", "stat"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_has_grafanas_top_level_fields() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    assert {"from", "to"} <= set(board["time"])
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["current"]["value"] == "dockyard"  # the scrape job the alert rules expect


def test_panels_have_unique_ids_and_fit_the_grid_without_overlapping() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_query_panel_reads_the_chosen_prometheus_with_unique_ref_ids() -> None:
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]


def test_queries_use_only_declared_variables_and_filter_on_the_job() -> None:
    declared = {variable["name"] for variable in dashboard()["templating"]["list"]}
    for title, expr in queries():
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= declared | GRAFANA_VARIABLES, (title, used)
        assert 'job=~"$job"' in expr, title  # one dashboard, any scrape job name


def test_it_shows_what_the_issue_asks_for() -> None:
    text = " ".join(expr for _, expr in queries())
    for metric in (
        "http_requests_total",  # traffic
        "http_request_duration_seconds_bucket",  # latency percentiles
        "registry_request_failures_total",  # errors
        "dockyard_project_quota_used_bytes",  # storage per project
        "jobs_finished_total",
        "dockyard_gc_last_success_timestamp_seconds",
    ):
        assert metric in text, metric
