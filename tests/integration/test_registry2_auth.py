"""registry:2's auth modes on a real `dockyard serve`, each from a `version: 0.1` file and from
`REGISTRY_*` variables: does the authentication actually hold? (A file plus REGISTRY_AUTH=htpasswd
and its realm and path ran with no authentication at all.) Modes registry:2 has that dockyard cannot
honour stop the start with exit status 2 and one line naming them."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.auth.tokens import libtrust_key_id
from tests.support.server import DOCKYARD, RunningServer, free_port, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.unit.auth.test_external import certificate

USER = ("ci", "a-long-htpasswd-password")
REALM = "Registry Realm"
ISSUER, SERVICE, TOKEN_REALM = "auth.example", "registry.example", "https://auth.example/token"
REGISTRY2 = {"version": "0.1", "storage": {"inmemory": None}}
TOKEN_ENV = {"REGISTRY_AUTH": "token", "REGISTRY_AUTH_TOKEN_REALM": TOKEN_REALM,
             "REGISTRY_AUTH_TOKEN_SERVICE": SERVICE, "REGISTRY_AUTH_TOKEN_ISSUER": ISSUER}  # fmt: skip
Source = str  # "file" or "env"
sources = pytest.mark.parametrize("source", ["file", "env"])


def _serve(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> Iterator[RunningServer]:
    server = start_server(tmp_path, config, env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def htpasswd_file(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(USER[1].encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{USER[0]}:{hashed}\n")
    return path


@pytest.fixture
def signer(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(certificate(key, "token signer").public_bytes(serialization.Encoding.PEM))
    return key, bundle


def token_for(key: ec.EllipticCurvePrivateKey, repository: str, actions: list[str]) -> str:
    now = int(time.time())
    access = [{"type": "repository", "name": repository, "actions": actions}]
    claims = {"iss": ISSUER, "sub": "ci", "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
              "jti": str(now), "access": access}  # fmt: skip
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": libtrust_key_id(key.public_key())})


def start_upload(server: RunningServer, repository: str, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/{repository}/blobs/uploads/", **kw, timeout=HTTP_TIMEOUT)


@sources
def test_htpasswd_holds(tmp_path: Path, htpasswd_file: Path, source: Source) -> None:
    if source == "file":
        config = {**REGISTRY2, "auth": {"htpasswd": {"realm": REALM, "path": str(htpasswd_file)}}}
        env: dict[str, str] = {}
    else:
        config = dict(REGISTRY2)
        env = {"REGISTRY_AUTH": "htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM": REALM,
               "REGISTRY_AUTH_HTPASSWD_PATH": str(htpasswd_file)}  # fmt: skip
    for server in _serve(tmp_path / "server", config, env):
        anonymous = httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == f'Basic realm="{REALM}"'
        assert (
            httpx.get(f"{server.url}/v2/", auth=(USER[0], "wrong-password"), timeout=HTTP_TIMEOUT).status_code
            == 401
        )
        assert start_upload(server, "team/app").status_code == 401
        assert httpx.get(f"{server.url}/v2/", auth=USER, timeout=HTTP_TIMEOUT).status_code == 200
        assert start_upload(server, "team/app", auth=USER).status_code == 202


@sources
def test_token_auth_holds(
    tmp_path: Path, signer: tuple[ec.EllipticCurvePrivateKey, Path], source: Source
) -> None:
    key, bundle = signer
    if source == "file":
        token = {"realm": TOKEN_REALM, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(bundle)}
        config = {**REGISTRY2, "auth": {"token": token}}
        env: dict[str, str] = {}
    else:
        config = dict(REGISTRY2)
        env = {**TOKEN_ENV, "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": str(bundle)}
    other_key = ec.generate_private_key(ec.SECP256R1())
    for server in _serve(tmp_path / "server", config, env):
        anonymous = httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT)
        assert anonymous.status_code == 401
        challenge = anonymous.headers["www-authenticate"]
        assert challenge.startswith(f'Bearer realm="{TOKEN_REALM}",service="{SERVICE}"'), challenge
        assert start_upload(server, "team/app").status_code == 401
        pushing = {"Authorization": f"Bearer {token_for(key, 'team/app', ['pull', 'push'])}"}
        assert httpx.get(f"{server.url}/v2/", headers=pushing, timeout=HTTP_TIMEOUT).status_code == 200
        assert start_upload(server, "team/app", headers=pushing).status_code == 202
        # A valid token without the scope: 401 (a new token may have it), as registry:2 answers.
        assert start_upload(server, "team/other", headers=pushing).status_code == 401
        forged = {"Authorization": f"Bearer {token_for(other_key, 'team/app', ['pull', 'push'])}"}
        assert httpx.get(f"{server.url}/v2/", headers=forged, timeout=HTTP_TIMEOUT).status_code == 401
        assert start_upload(server, "team/app", headers=forged).status_code == 401


def test_no_auth_section_runs_open_as_registry2_does_and_says_so(tmp_path: Path) -> None:
    for server in _serve(tmp_path / "server", dict(REGISTRY2), {}):
        assert httpx.get(f"{server.url}/v2/", timeout=HTTP_TIMEOUT).status_code == 200
        assert start_upload(server, "team/app").status_code == 202
        assert "no auth section in this registry:2 config" in server.log()


def refused_start(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> str:
    """Start `dockyard serve` expecting it to refuse: the exit status is 2, stderr one line."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yml"
    where = {"datadir": str(tmp_path / "data"), "http": {"addr": f"127.0.0.1:{free_port()}"}}
    path.write_text(yaml.safe_dump({**config, **where}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DOCKYARD_"))}
    # The binary: a refused start is the `serve` process's exit status and stderr (cli/entry.py's path).
    command = [DOCKYARD, "serve", "--config", str(path)]
    finished = subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2, (finished.returncode, finished.stderr)
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in finished.stderr, finished.stderr
    return lines[0]


@sources
def test_silly_auth_refuses_to_start(tmp_path: Path, source: Source) -> None:
    if source == "file":
        said = refused_start(tmp_path, {**REGISTRY2, "auth": {"silly": {"realm": "r", "service": "s"}}}, {})
        assert "auth.silly: not supported" in said
    else:
        said = refused_start(tmp_path, REGISTRY2, {"REGISTRY_AUTH": "silly"})
        assert "REGISTRY_AUTH: not supported: silly authentication" in said


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REGISTRY_AUTH_TOKEN_AUTOREDIRECT": "true"}, "REGISTRY_AUTH_TOKEN_AUTOREDIRECT"),
        ({"REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL": "https://hooks.example/"}, "REGISTRY_NOTIFICATIONS"),
        ({"REGISTRY_HTTP_TLS_CLIENTCAS_0": "/ca.pem"}, "REGISTRY_HTTP_TLS_CLIENTCAS_0"),
        ({"REGISTRY_AUTH": "htpasswd"}, "htpasswd"),  # a type without its path
    ],
)
def test_registry2_variables_dockyard_cannot_honour_stop_the_start(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    if "AUTOREDIRECT" in next(iter(env)):
        env = {**env, **TOKEN_ENV, "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": "/b.pem"}
    assert named in refused_start(tmp_path, REGISTRY2, env)
