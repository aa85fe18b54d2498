"""`dockyard doctor` run as an operator runs it: the command, on the config a running `dockyard serve`
uses (TLS with a certificate `dockyard cert` made, dockyard's own auth, the test pass's database)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from dockyard.cli.cert import make_certificates
from tests.support.cli import run_dockyard
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN_PASSWORD = "doctor-admin-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("doctor")
    paths = make_certificates("localhost", workdir / "certs")
    running = start_server(
        workdir,
        {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        tls=(paths.server_cert, paths.server_key),
    )
    # A token request: the first makes the token signing key doctor checks.
    answer = httpx.get(
        f"{running.url}/token", auth=("admin", ADMIN_PASSWORD), verify=False, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    yield running
    running.stop()


def _doctor(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run_dockyard(
        "doctor",
        "--config",
        config,
        *options,
        # As an operator runs it: without the test run's own DOCKYARD_TEST_* variables, which the
        # config loader rightly warns about.
        env={k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_TEST_")},
    )


def _with_host(server: RunningServer, tmp_path: Path, host: str) -> Path:
    config = yaml.safe_load(server.config_path.read_text())
    config["http"]["host"] = host
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_doctor_finds_a_running_installation_healthy(server: RunningServer, tmp_path: Path) -> None:
    config = _with_host(server, tmp_path, f"https://localhost:{server.host.rsplit(':', 1)[1]}")

    answer = _doctor(config, "--json")

    assert answer.returncode == 0, answer.stdout + answer.stderr
    report = json.loads(answer.stdout)
    verdicts = {check["check"]: check["verdict"] for check in report["checks"]}
    assert report["ok"] is True
    assert verdicts["config"] == "OK"
    assert verdicts["database"] == "OK"
    assert verdicts["storage"] == "OK"
    assert verdicts["tls"] == "OK"
    assert verdicts["signing keys"] == "OK"
    keys = next(check for check in report["checks"] if check["check"] == "signing keys")
    assert keys["summary"].startswith("1 active signing key(s), all open")  # under the datadir's secret
    assert verdicts["clock"] == "OK"
    tls = next(check for check in report["checks"] if check["check"] == "tls")
    assert "names localhost" in tls["summary"]


def test_doctor_fails_when_the_certificate_does_not_name_the_public_host(
    server: RunningServer, tmp_path: Path
) -> None:
    config = _with_host(server, tmp_path, "https://registry.example.com")

    answer = _doctor(config)

    assert answer.returncode == 1, answer.stdout + answer.stderr
    tls_line = next(line for line in answer.stdout.splitlines() if " tls " in line)
    assert tls_line.startswith("FAIL")
    assert "not registry.example.com (http.host)" in tls_line
    assert "1 failure(s)" in answer.stdout


def test_doctor_names_an_invalid_config_and_fails(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("http:\n  addr: not-an-address\n")

    answer = _doctor(config)

    assert answer.returncode == 1
    assert answer.stdout.startswith("FAIL  config")
    assert "http.addr" in answer.stdout


def _why_denied(server: RunningServer, *arguments: str) -> subprocess.CompletedProcess[str]:
    return run_dockyard(
        "doctor",
        "why-denied",
        *arguments,
        "--config",
        server.config_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_TEST_")},
    )


def test_why_denied_explains_from_the_running_registrys_accounts(server: RunningServer) -> None:
    unknown = _why_denied(server, "mallory", "team/app", "--action", "push")
    admin = _why_denied(server, "admin", "team/app", "--action", "push", "--json")

    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "there is no user named mallory" in unknown.stdout
    assert unknown.stdout.rstrip().endswith("mallory may not push team/app.")
    assert admin.returncode == 0, admin.stdout + admin.stderr
    report = json.loads(admin.stdout)
    assert report["allowed"] is True
    assert any("an administrator's push creates it" in check["summary"] for check in report["checks"])


def test_doctor_disk_reports_on_the_running_registry(server: RunningServer) -> None:
    answer = run_dockyard(
        "doctor",
        "disk",
        "--config",
        server.config_path,
        "--json",
        env={k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_TEST_")},
    )

    assert answer.returncode == 0, answer.stdout + answer.stderr
    checks = {check["check"]: check for check in json.loads(answer.stdout)["checks"]}
    assert list(checks) == ["free space", "stored", "projects", "gc", "retention"]
    assert checks["gc"]["summary"].startswith("garbage collection would free 0 B now")


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    store = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield store
    store.stop()


@pytest.mark.parametrize("reachable", [True, False])
def test_the_storage_probe_on_s3(seaweedfs: RunningSeaweedFS, tmp_path: Path, reachable: bool) -> None:
    config = tmp_path / "config.yml"
    s3 = {
        "bucket": seaweedfs.bucket,
        "region": "us-east-1",
        # Unreachable: a port nothing listens on (an endpoint with a typo, a store that is down).
        "regionendpoint": seaweedfs.endpoint if reachable else "http://127.0.0.1:9",
        "accesskey": seaweedfs.access_key,
        "secretkey": seaweedfs.secret_key,
        "rootdirectory": "/doctor-test",
    }
    config.write_text(yaml.safe_dump({"datadir": str(tmp_path / "data"), "storage": {"s3": s3}}))

    answer = _doctor(config, "--json")

    storage = next(check for check in json.loads(answer.stdout)["checks"] if check["check"] == "storage")
    if reachable:
        assert storage["verdict"] == "OK", storage
        assert storage["summary"] == f"the s3 storage (bucket {seaweedfs.bucket}) is writable and readable."
    else:
        assert storage["verdict"] == "FAIL", storage
        assert f"(bucket {seaweedfs.bucket}) is not writable" in storage["summary"]
        assert answer.returncode == 1
    assert seaweedfs.secret_key not in answer.stdout


METRICS_TOKEN = "doctor-metrics-token-0123456789abcdef"


def test_doctor_slow_reads_the_nodes_own_metrics(make_server: Callable[..., RunningServer]) -> None:
    running = make_server(
        {"auth": {"enabled": True}, "metrics": {"token": METRICS_TOKEN}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    for _ in range(5):
        httpx.get(f"{running.url}/v2/", timeout=HTTP_TIMEOUT)  # 401s: requests all the same
    config = yaml.safe_load(running.config_path.read_text())
    del config["metrics"]
    untokened = running.config_path.with_name("no-token.yml")
    untokened.write_text(yaml.safe_dump(config))

    answer = _doctor_slow(running.config_path, "--json")
    refused = _doctor_slow(untokened)

    assert answer.returncode == 0, answer.stdout + answer.stderr
    checks = {check["check"]: check for check in json.loads(answer.stdout)["checks"]}
    # Ours and the start-up probe's.
    assert re.match(r"6 requests, mean [0-9.]+ ms, 95% under [0-9.]+ ms", checks["GET /v2/"]["summary"])
    assert refused.returncode == 1 and "answered 401 (set metrics.token" in refused.stderr
    assert METRICS_TOKEN not in answer.stdout + refused.stdout + refused.stderr


def _doctor_slow(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run_dockyard(
        "doctor",
        "slow",
        "--config",
        config,
        *options,
        env={k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_TEST_")},
    )
