"""The provider client's "test" when the provider cannot be reached or is not what the configuration
says: an answer naming the failure, never an exception. (A real provider: tests/integration/test_oidc.py.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockyard.config.auth_settings import OIDCSettings
from dockyard.oidc.client import OIDCClient


def settings(issuer: str) -> OIDCSettings:
    return OIDCSettings(issuer=issuer, client_id="dockyard", client_secret="s3cret", timeout=2)


@pytest.fixture
def impostor() -> Iterator[str]:
    """A loopback server whose discovery document names another issuer."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"issuer": "https://evil.example.com"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_unreachable_provider_is_reported() -> None:
    client = OIDCClient(settings("http://127.0.0.1:9"), "https://registry.example.com/ui/oidc/callback")
    found = client.check()
    assert found["ok"] is False and "unavailable" in found["error"]
    assert found["redirect_uri"] == "https://registry.example.com/ui/oidc/callback"


def test_a_provider_naming_another_issuer_is_reported(impostor: str) -> None:
    found = OIDCClient(settings(impostor), "https://r.example.com/cb").check()
    assert found["ok"] is False and "names another issuer" in found["error"]
