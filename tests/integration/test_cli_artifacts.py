"""`dockyard artifact scan|sign|verify|tag` against a real `dockyard serve` (auth on, job worker), run as a
CI job runs them: a subprocess with a robot's name and secret in DOCKYARD_USERNAME / DOCKYARD_PASSWORD and
no stored login. The pipeline itself (docs/ci.md) is tests/e2e/test_ci_recipes.py; here are the cases
around it: the credentials' errors, a scan requested when the project does not scan on push, a failed
scan failing the gate, signatures kept when another key signs, a key the project does not trust, keys
of each kind, and tags that stay on the digest."""

from __future__ import annotations

import gzip
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import dockyard_cert
from tests.integration.test_inventory import push
from tests.support.cli import run_dockyard
from tests.support.cosign import make_key
from tests.support.layers import file, layer
from tests.support.ociclient import OCI_LAYER, OCIClient
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

# The subject is the CLI; the server's scans and verdicts it reads are tested on both databases by
# test_scans_api.py and test_signatures.py.
pytestmark = pytest.mark.db_independent

ADMIN = ("admin", "artifact-cli-Passw0rd-1")
OS_RELEASE = b'ID=debian\nVERSION_ID="12"\n'
STATUS = (
    b"Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: 1:1.2.13\n"
)


@dataclass
class Robot:
    server: RunningServer
    name: str
    secret: str
    home: Path

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env.update(
            XDG_CONFIG_HOME=str(self.home),
            DOCKYARD_SERVER=self.server.url,
            DOCKYARD_USERNAME=self.name,
            DOCKYARD_PASSWORD=self.secret,
            COLUMNS="200",
        )
        env.update(extra_env)
        return run_dockyard(*args, env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("artifact-cli"),
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        assert client.post("/projects", json={"name": "build"}).status_code == 201
        yield client


@pytest.fixture(scope="module")
def robot(server: RunningServer, admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Robot:
    created = admin.post("/projects/build/robots", json={"name": "ci", "actions": ["pull", "push"]})
    assert created.status_code == 201, created.text
    body = created.json()
    return Robot(server, body["name"], body["secret"], tmp_path_factory.mktemp("robot-home"))


def push_image(server: RunningServer, repo: str, tag: str, layers: list[tuple[str, bytes]]) -> str:
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        return push(OCIClient(http), repo, tag, layers)


def debian_layer(extra: bytes = b"") -> bytes:
    return layer([file("etc/os-release", OS_RELEASE), file("var/lib/dpkg/status", STATUS + extra)])


def manifest_of(server: RunningServer, repo: str, reference: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/api/v1/repositories/{repo}/artifacts/{reference}", auth=ADMIN, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    manifest: dict[str, Any] = answer.json()["manifest"]
    return manifest


def test_credentials_from_the_environment_need_a_server_and_are_checked(robot: Robot) -> None:
    done = robot.run("artifact", "verify", "build/none:1", DOCKYARD_SERVER="")
    assert done.returncode == 1
    assert "DOCKYARD_USERNAME is set: give the server with --server or DOCKYARD_SERVER" in done.stderr
    done = robot.run("artifact", "verify", "build/none:1", DOCKYARD_PASSWORD="wrong")
    assert done.returncode == 1
    assert f"refused DOCKYARD_USERNAME={robot.name}" in done.stderr
    assert "dockyard login" not in done.stderr  # a robot cannot log in: no such advice
    assert not (robot.home / "dockyard").exists()  # nothing stored


def test_a_scan_is_requested_when_none_is_coming_and_the_gate_reads_it(
    server: RunningServer, robot: Robot
) -> None:
    digest = push_image(server, "build/clean", "1", [(OCI_LAYER, debian_layer())])
    never = robot.run("artifact", "scan", "build/clean:1")
    assert never.returncode == 1
    assert f"build/clean@{digest} has not been scanned (--wait requests a scan)" in never.stderr
    bad = robot.run("artifact", "scan", "build/clean:1", "--fail-on", "severe")
    assert bad.returncode == 1 and "--fail-on 'severe': one of critical, high, medium, low" in bad.stderr
    # build does not scan on push: --wait asks for a scan (the robot may: it pushes there).
    gated = robot.run("artifact", "scan", "build/clean:1", "--wait", "--timeout", "60", "--fail-on", "low")
    assert gated.returncode == 0, gated.stderr
    assert f"requested a scan of build/clean@{digest}" in gated.stderr
    assert f"build/clean@{digest}: no known vulnerabilities" in gated.stdout
    # This server's vulnerability database was never imported: clean means nothing here, and it says so.
    assert "warning: the scan used an empty vulnerability database" in gated.stderr
    as_json = json.loads(robot.run("artifact", "scan", f"build/clean@{digest}", "--json").stdout)
    assert as_json["status"] == "done" and as_json["digest"] == digest


def test_a_failed_scan_fails_the_gate(server: RunningServer, robot: Robot) -> None:
    push_image(server, "build/broken", "1", [(OCI_LAYER, gzip.compress(b"not a tar archive"))])
    done = robot.run(
        "artifact", "scan", "build/broken:1", "--wait", "--timeout", "60", "--fail-on", "critical"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the scan failed" in done.stderr and "no result to judge" in done.stderr


def test_signatures_verify_and_are_kept_when_another_key_signs(
    server: RunningServer, admin: httpx.Client, robot: Robot, tmp_path: Path
) -> None:
    digest = push_image(server, "build/signed", "1", [(OCI_LAYER, debian_layer(b"\n"))])
    unsigned = robot.run("artifact", "verify", "build/signed:1")
    assert unsigned.returncode == 3 and ": unsigned: " in unsigned.stdout
    trusted = {kind: make_key(kind, tmp_path, kind) for kind in ("ecdsa", "rsa", "ed25519")}
    stranger = make_key("ecdsa", tmp_path, "stranger")
    for kind, key in trusted.items():
        answer = admin.post("/projects/build/signing-keys", json={"name": kind, "public_key": key.public_pem})
        assert answer.status_code == 201, answer.text
    signed = robot.run("artifact", "sign", "build/signed:1", "--key", str(stranger.private))
    assert signed.returncode == 0, signed.stderr
    tag = f"sha256-{digest.removeprefix('sha256:')}.sig"
    assert f"Signed build/signed@{digest}: signature build/signed:{tag}" in signed.stdout
    invalid = robot.run("artifact", "verify", "build/signed:1")
    assert invalid.returncode == 4, invalid.stdout + invalid.stderr
    assert ": invalid: " in invalid.stdout
    for count, key in enumerate(trusted.values(), start=2):
        done = robot.run("artifact", "sign", f"build/signed@{digest}", "--key", str(key.private))
        assert done.returncode == 0, done.stderr
        assert len(manifest_of(server, "build/signed", tag)["layers"]) == count  # earlier ones kept
        verified = robot.run("artifact", "verify", "build/signed:1", "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["status"] == "verified"
    # The same key again adds nothing new (ECDSA signatures differ each time, Ed25519's do not).
    again = robot.run("artifact", "sign", "build/signed:1", "--key", str(trusted["ed25519"].private))
    assert again.returncode == 0
    assert len(manifest_of(server, "build/signed", tag)["layers"]) == 4


def test_tags_name_the_same_digest_and_a_policy_is_not_bypassed(
    server: RunningServer, admin: httpx.Client, robot: Robot
) -> None:
    digest = push_image(server, "build/promoted", "1", [(OCI_LAYER, debian_layer(b"\n\n"))])
    done = robot.run("artifact", "tag", "build/promoted:1", "stable", "prod")
    assert done.returncode == 0, done.stderr
    assert f"Tagged build/promoted@{digest} as stable, prod." in done.stdout
    for tag in ("stable", "prod"):
        head = httpx.head(
            f"{server.url}/v2/build/promoted/manifests/{tag}",
            auth=ADMIN,
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=HTTP_TIMEOUT,
        )
        assert head.headers["docker-content-digest"] == digest
    # A project that requires signatures: an unsigned artifact cannot be promoted (it cannot be pulled).
    assert admin.patch("/projects/build", json={"require_signature": True}).status_code == 200
    try:
        refused = robot.run("artifact", "tag", "build/promoted:1", "release")
        assert refused.returncode == 1
        assert "artifact is not signed by a trusted key (policy: require signature)" in refused.stderr
    finally:
        assert admin.patch("/projects/build", json={"require_signature": False}).status_code == 200


def test_https_with_the_ca_in_dockyard_ca_cert(tmp_path: Path) -> None:
    certs = dockyard_cert("127.0.0.1", tmp_path / "certs")
    server = start_server(
        tmp_path / "tls-server",
        {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
        tls=(certs / "server.crt", certs / "server.key"),
    )
    trust = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    try:
        with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT, verify=trust) as http:
            created = http.post("/api/v1/projects", json={"name": "secure"})
            assert created.status_code == 201, created.text
            answer = http.post(
                "/api/v1/projects/secure/robots", json={"name": "ci", "actions": ["pull", "push"]}
            )
            assert answer.status_code == 201, answer.text
            digest = push(OCIClient(http), "secure/app", "1", [(OCI_LAYER, debian_layer())])
        robot = Robot(server, answer.json()["name"], answer.json()["secret"], tmp_path / "home")
        untrusted = robot.run("artifact", "tag", "secure/app:1", "stable")
        assert untrusted.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        assert "pass --ca-cert FILE (or DOCKYARD_CA_CERT)" in untrusted.stderr
        trusted = robot.run(
            "artifact", "tag", "secure/app:1", "stable", DOCKYARD_CA_CERT=str(certs / "ca.crt")
        )
        assert trusted.returncode == 0, trusted.stderr
        unsigned = robot.run(
            "artifact", "verify", "secure/app:stable", DOCKYARD_CA_CERT=str(certs / "ca.crt")
        )
        assert unsigned.returncode == 3, unsigned.stderr
        assert f"secure/app@{digest}: unsigned" in unsigned.stdout
    finally:
        server.stop()
