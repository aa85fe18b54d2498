"""Other ways in: the app under uvicorn (besides Granian), and `dockyard db upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.support.cli import run_dockyard
from tests.support.ociclient import OCIClient
from tests.support.server import DOCKYARD, free_port, wait_until_answering
from tests.support.timeouts import HTTP_TIMEOUT


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"datadir": str(tmp_path / "data"), "auth": {"enabled": False}}))
    return config


def test_app_serves_under_uvicorn(tmp_path: Path) -> None:
    config = _config(tmp_path)
    upgraded = run_dockyard("db", "upgrade", "--config", config)
    assert upgraded.returncode == 0, upgraded.stderr
    port = free_port()
    env = {**os.environ, "DOCKYARD_CONFIG": str(config)}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "dockyard.app:worker_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url, process)
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
            data = os.urandom(300_000)
            digest = OCIClient(http).push_blob("team/app", data)
            assert http.get(f"/v2/team/app/blobs/{digest}").content == data
            ranged = http.get(f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
            assert ranged.status_code == 206
            assert ranged.content == data[10:20]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for _ in range(2):
        result = run_dockyard("db", "upgrade", "--config", config)
        assert result.returncode == 0, result.stderr
        assert "database at revision" in result.stdout
    assert (tmp_path / "data" / "dockyard.db").exists()


def test_a_weak_admin_password_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """It used to abort with a full traceback; now it says which variable, why, and exits 2."""
    config = tmp_path / "config.yml"
    where = {"datadir": str(tmp_path / "data"), "http": {"addr": f"127.0.0.1:{free_port()}"}}
    config.write_text(yaml.safe_dump({**where, "auth": {"enabled": True}, "jobs": {"run_in_serve": False}}))
    env = {**os.environ, "DOCKYARD_ADMIN_PASSWORD": "password"}
    # The binary: what `serve` says and its exit status are the process's (cli/entry.py's path).
    finished = subprocess.run(
        [DOCKYARD, "serve", "--config", str(config)], env=env, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr
    said = [line for line in finished.stderr.splitlines() if line.startswith("dockyard: ")]
    assert said == [
        "dockyard: DOCKYARD_ADMIN_PASSWORD: the password is too easy to guess: This is a top-10 common "
        "password. Add another word or two. Uncommon words are better."
    ], finished.stderr
