"""Fixtures for the end-to-end suite: sandboxed real clients and a dockyard serving HTTPS with its own CA."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import run_dockyard
from tests.support.server import RunningServer, start_server
from tests.support.tools import ContainerTools

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright (imported here: only the portal's tests need it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[ContainerTools]:
    """skopeo, podman and buildah with a private store and config under this test's tmp dir."""
    sandbox = ContainerTools(tmp_path / "containers")
    yield sandbox
    sandbox.cleanup()


def make_ca_dir(cert_out: Path, ca_dir: Path) -> Path:
    """A directory holding only the CA as `ca.crt`: containers/image reads every *.crt there as a trusted root
    (and would take a lone *.key for a client certificate, so the server key must not be in it)."""
    ca_dir.mkdir(parents=True)
    shutil.copy(cert_out / "ca.crt", ca_dir / "ca.crt")
    return ca_dir


def dockyard_cert(host: str, out: Path) -> Path:
    made = run_dockyard("cert", host, "--out", out)
    assert made.returncode == 0, made.stdout + made.stderr
    for name in ("ca.crt", "server.crt", "server.key"):
        assert (out / name).is_file(), f"`dockyard cert` did not write {name} into {out}"
    return out


@dataclass
class TlsRegistry:
    server: RunningServer
    ca_dir: Path  # trust dir for --cert-dir flags: just this server's CA
    ca_file: Path  # for httpx's verify=
    wrong_ca_dir: Path  # a CA that did not sign the server's certificate

    def ssl_context(self) -> ssl.SSLContext:
        """For httpx's verify=: trusts this server's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRegistry]:
    """dockyard serving HTTPS with a certificate from `dockyard cert 127.0.0.1`."""
    root = tmp_path_factory.mktemp("tls")
    certs = dockyard_cert("127.0.0.1", root / "certs")
    other = dockyard_cert("127.0.0.1", root / "other-certs")
    server = start_server(root / "server", tls=(certs / "server.crt", certs / "server.key"))
    try:
        yield TlsRegistry(
            server=server,
            ca_dir=make_ca_dir(certs, root / "trust"),
            ca_file=certs / "ca.crt",
            wrong_ca_dir=make_ca_dir(other, root / "wrong-trust"),
        )
    finally:
        server.stop()
