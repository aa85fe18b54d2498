"""`registry_request_failures_total{operation,status,code}`: /v2 errors by what the client tried (push,
pull, delete) and why (the spec's error code), through the whole app in-process."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dockyard.api.middleware import oci_error_code
from tests.support.inprocess import ADMIN, TestClient, in_process_client
from tests.support.ociclient import OCIClient, digest_of


def failures(http: TestClient) -> dict[tuple[str, str, str], float]:
    answer = http.get("/metrics", auth=ADMIN)
    assert answer.status_code == 200, answer.text
    return {
        (sample.labels["operation"], sample.labels["status"], sample.labels["code"]): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "registry_request_failures_total"
    }


def test_failures_are_counted_by_operation_status_and_code(tmp_path: Path) -> None:
    with in_process_client(tmp_path) as http:
        assert http.post("/api/v1/projects", json={"name": "team"}, auth=ADMIN).status_code == 201
        assert http.post("/api/v1/projects", json={"name": "capped"}, auth=ADMIN).status_code == 201
        quota = http.put("/api/v1/projects/capped/quota", json={"limit_bytes": 10}, auth=ADMIN)
        assert quota.status_code < 300, quota.text
        oci = OCIClient(http)
        assert oci.get_manifest("team/app", "v1").status_code == 401  # anonymous: challenged
        http.auth = ADMIN
        oci.push_image("team/app", "v1")
        assert oci.get_manifest("team/app", "v1").status_code == 200
        for _ in range(2):
            assert oci.get_manifest("team/app", "missing").status_code == 404
        wrong = oci.finish_upload(oci.upload_location("team/app"), digest_of(b"other"), b"data")
        assert wrong.status_code == 400
        over = oci.finish_upload(oci.upload_location("capped/app"), digest_of(b"x" * 100), b"x" * 100)
        assert over.status_code == 403, over.text

        counted = failures(http)
        assert counted[("pull", "401", "UNAUTHORIZED")] == 1
        assert counted[("pull", "404", "MANIFEST_UNKNOWN")] == 2
        assert counted[("push", "400", "DIGEST_INVALID")] == 1
        assert counted[("push", "403", "DENIED")] == 1
        # Successes count nowhere here, and no repository or tag is a label.
        assert sum(counted.values()) == 5
        assert "team/app" not in str(counted)


def test_the_code_is_one_of_the_specs_or_other() -> None:
    assert oci_error_code(b'{"errors": [{"code": "BLOB_UNKNOWN", "message": "x"}]}') == "BLOB_UNKNOWN"
    assert oci_error_code(b'{"errors":[{"code":"MADE_UP_BY_SOMEONE"}]}') == "OTHER"
    assert oci_error_code(b"") == "NONE"
    assert oci_error_code(b"internal server error") == "NONE"
