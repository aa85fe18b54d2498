"""Operating the server: metrics, request ids, extra headers, upload purging, read-only mode,
registry:2 config files, and config validation at start."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from tests.support.cli import run_dockyard
from tests.support.ociclient import OCIClient
from tests.support.server import DOCKYARD, RunningServer
from tests.support.timeouts import HTTP_TIMEOUT


def _metric(text: str, name: str) -> float:
    """Sum every sample of a metric family (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            sample, value = line.rsplit(" ", 1)
            if sample == name or sample.startswith(name + "{"):
                total += float(value)
    return total


def test_metrics_count_requests_uploads_and_bytes(server: RunningServer, repo_name: str) -> None:
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        before = http.get("/metrics").text
        oci = OCIClient(http)
        digest = oci.push_blob(repo_name, b"x" * 1000)
        assert http.get(f"/v2/{repo_name}/blobs/{digest}").status_code == 200
        after = http.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert _metric(text, "uploads_completed_total") >= _metric(before, "uploads_completed_total") + 1
    assert _metric(text, "blob_bytes_received_total") >= _metric(before, "blob_bytes_received_total") + 1000
    assert _metric(text, "blob_bytes_sent_total") >= _metric(before, "blob_bytes_sent_total") + 1000
    # Requests are labelled by route template, never by the raw path.
    assert 'route="/v2/{name:path}/blobs/{digest}"' in text
    assert repo_name not in text
    assert "http_request_duration_seconds_bucket" in text


def test_every_response_carries_a_request_id(client: httpx.Client) -> None:
    first = client.get("/v2/")
    second = client.get("/v2/nope/manifests/latest")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert client.get("/v2/", headers={"X-Request-Id": "trace-123"}).headers["x-request-id"] == "trace-123"


def test_configured_http_headers_are_added(make_server: Callable[..., RunningServer]) -> None:
    server = make_server({"http": {"headers": {"X-Content-Type-Options": ["nosniff"]}}})
    response = httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_stale_uploads_are_purged(make_server: Callable[..., RunningServer]) -> None:
    purging = {"enabled": True, "age": "1s", "interval": "1s", "dryrun": False}
    server = make_server(
        {"storage": {"maintenance": {"uploadpurging": purging}}, "jobs": {"run_in_serve": True}}
    )
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        location = oci.upload_location("team/app")
        assert oci.patch_chunk(location, b"partial data").status_code == 202
        uploads_dir = server.datadir / "storage" / "uploads"
        assert any(uploads_dir.iterdir())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and http.get(str(oci.url(location))).status_code == 204:
            time.sleep(0.3)
        response = http.get(str(oci.url(location)))
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert not uploads_dir.exists() or not any(uploads_dir.iterdir())


def test_read_only_mode_refuses_writes_and_serves_reads(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    writable = make_server()
    with httpx.Client(base_url=writable.url, timeout=HTTP_TIMEOUT) as http:
        pushed = OCIClient(http).push_image("team/app", "1.0")
    writable.stop()
    config = yaml.safe_load(writable.config_path.read_text())
    config["storage"] = {"maintenance": {"readonly": {"enabled": True}}}
    read_only = make_server({"datadir": config["datadir"], **{"storage": config["storage"]}})
    with httpx.Client(base_url=read_only.url, timeout=HTTP_TIMEOUT) as http:
        assert http.get(f"/v2/team/app/manifests/{pushed.digest}").status_code == 200
        refused = http.post("/v2/team/app/blobs/uploads/")
        assert refused.status_code == 405
        assert refused.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert http.delete(f"/v2/team/app/manifests/{pushed.digest}").status_code == 405


def test_registry2_config_file_is_served_with_its_defaults(tmp_path: Path) -> None:
    """A registry:2 config.yml (version 0.1) works as it is, and keeps registry:2's default of
    deletes disabled."""
    from tests.support.server import free_port, wait_until_answering

    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "info", "fields": {"service": "registry"}},
                "storage": {
                    "cache": {"blobdescriptor": "inmemory"},
                    "filesystem": {"rootdirectory": str(tmp_path / "registry")},
                },
                "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
                "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
            }
        )
    )
    env = {"DOCKYARD_DATADIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    # The binary: `dockyard serve CONFIG` as registry:2 users start it (cli/entry.py's own path).
    process = subprocess.Popen(
        [DOCKYARD, "serve", str(config)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url, process)
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
            pushed = OCIClient(http).push_image("team/app", "1.0")
            refused = http.delete(f"/v2/team/app/manifests/{pushed.digest}")
        assert refused.status_code == 405
        assert refused.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert any((tmp_path / "registry" / "blobs").rglob("data"))
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_invalid_config_stops_the_server_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"storage": {"delete": {"enabled": "perhaps"}}}))
    # `serve` is the binary's own path (cli/entry.py reads its config before any CLI module loads).
    served = subprocess.run(
        [DOCKYARD, "serve", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    checked = run_dockyard("config", "check", "--config", config)
    for result in (served, checked):
        assert result.returncode != 0
        assert "storage.delete.enabled" in result.stderr


def test_inmemory_storage_serves_in_one_process_and_forgets_at_restart(
    make_server: Callable[..., RunningServer],
) -> None:
    config = {"storage": {"inmemory": {}}, "http": {"workers": 2}}
    first = make_server(config)
    with httpx.Client(base_url=first.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        pushed = oci.push_image("team/app", "1.0")
        # Every request lands in the one process that holds the bytes.
        for _ in range(10):
            assert (
                httpx.get(
                    f"{first.url}/v2/team/app/manifests/{pushed.digest}", timeout=HTTP_TIMEOUT
                ).status_code
                == 200
            )
    first.stop()
    again = make_server({**config, "datadir": str(first.datadir)})
    with httpx.Client(base_url=again.url, timeout=HTTP_TIMEOUT) as http:
        assert OCIClient(http).catalog() == []
