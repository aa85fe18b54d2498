"""Gauges /metrics reads from the database at scrape time: open uploads, stored blobs and when garbage
was last collected (before the first GC: since when the oldest blob has waited for one)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dockyard.api import metrics_state
from tests.support.inprocess import ADMIN, TestClient, in_process_client
from tests.support.ociclient import OCIClient


def gauges(http: TestClient) -> dict[str, float]:
    answer = http.get("/metrics", auth=ADMIN)
    assert answer.status_code == 200, answer.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if not sample.labels
    }


def test_uploads_blobs_and_the_wait_for_gc_are_read_at_scrape_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_state, "BLOB_TOTALS_TTL_SECONDS", 0.0)  # a fresh sum at every scrape
    with in_process_client(tmp_path) as http:
        empty = gauges(http)
        assert empty["dockyard_upload_sessions_open"] == 0
        assert empty["dockyard_storage_blobs"] == 0
        assert "dockyard_gc_last_success_timestamp_seconds" not in empty  # nothing stored, nothing to wait

        assert http.post("/api/v1/projects", json={"name": "team"}, auth=ADMIN).status_code == 201
        http.auth = ADMIN
        oci = OCIClient(http)
        before = time.time()
        pushed = oci.push_image("team/app", "v1")
        location = oci.upload_location("team/app")
        assert oci.patch_chunk(location, b"12345").status_code == 202

        values = gauges(http)
        assert values["dockyard_upload_sessions_open"] == 1
        assert values["dockyard_upload_sessions_bytes"] == 5
        assert values["dockyard_storage_blobs"] == 2  # config and layer; the open upload is no blob
        manifest = json.loads(pushed.body)
        stored = [manifest["config"], *manifest["layers"]]
        assert values["dockyard_storage_blobs_bytes"] == sum(item["size"] for item in stored)
        assert before - 1 <= values["dockyard_gc_last_success_timestamp_seconds"] <= time.time() + 1
