"""The upstream client against small scripted servers on loopback: the token flow (reuse, refresh after a
revocation), where credentials go on redirects, bounded timeouts, and the SSRF defence at connect time
(the default refuses loopback, link-local, a redirect to a refused address, a name resolving to one)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.client import HttpRemoteRegistry
from dockyard.upstream.interfaces import (
    Credentials,
    Timeouts,
    TLSOptions,
    UpstreamAddressRefused,
    UpstreamError,
    UpstreamInvalid,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from tests.e2e.conftest import dockyard_cert
from tests.support.loopback import raw_server
from tests.support.server import free_port

FAST = Timeouts(connect=2, read=2, total=3)
LOOPBACK = AddressGuard(["127.0.0.0/8"])
BLOB = b"layer bytes " * 1000
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
MANIFEST = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Scripted:
    """A loopback HTTP server answering each request with `answer`, recording what it was asked."""

    url: str
    seen: list[Request] = field(default_factory=list)
    answer: Callable[[Request], Answer] = lambda request: (404, {}, b"")


@contextmanager
def scripted(host: str = "127.0.0.1", tls: Path | None = None) -> Iterator[Scripted]:
    """`tls`: a directory from `dockyard cert` (server.crt, server.key): then it serves HTTPS."""
    port = free_port(host)
    server_state = Scripted(f"{'https' if tls else 'http'}://{host}:{port}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            server_state.seen.append(request)
            status, headers, body = server_state.answer(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "server.crt", tls / "server.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- SSRF: the default refuses, before a byte is sent ------------------------------------------
@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "http://[::1]:{port}", "http://localhost:{port}"])
def test_the_default_refuses_loopback_and_names_resolving_to_it(url: str) -> None:
    with scripted() as server:
        port = server.url.rsplit(":", 1)[1]
        remote = HttpRemoteRegistry(url.format(port=port), guard=AddressGuard(), timeouts=FAST)
        with pytest.raises(UpstreamAddressRefused):
            remote.check()
        assert server.seen == []


def test_the_default_refuses_the_cloud_metadata_address_without_connecting() -> None:
    remote = HttpRemoteRegistry("http://169.254.169.254", guard=AddressGuard(), timeouts=FAST)
    started = time.monotonic()
    with pytest.raises(UpstreamAddressRefused):
        remote.get_manifest("latest/meta-data", "iam")
    assert time.monotonic() - started < 1  # refused, not timed out trying


def test_a_redirect_to_a_refused_address_is_refused() -> None:
    with scripted("127.0.0.1") as registry, scripted("127.0.0.2") as internal:
        registry.answer = lambda r: (307, {"Location": f"{internal.url}/secret"}, b"")
        remote = HttpRemoteRegistry(registry.url, guard=AddressGuard(["127.0.0.1/32"]), timeouts=FAST)
        with pytest.raises(UpstreamAddressRefused), remote.open_blob("team/app", BLOB_DIGEST):
            pass
        assert len(registry.seen) == 1 and internal.seen == []


def test_a_token_realm_on_a_refused_address_is_refused() -> None:
    with scripted("127.0.0.1") as registry, scripted("127.0.0.2") as internal:
        challenge = f'Bearer realm="{internal.url}/token",service="s"'
        registry.answer = lambda r: (401, {"WWW-Authenticate": challenge}, b"")
        remote = HttpRemoteRegistry(registry.url, guard=AddressGuard(["127.0.0.1/32"]), timeouts=FAST)
        with pytest.raises(UpstreamAddressRefused):
            remote.check()
        assert internal.seen == []


def test_the_checked_address_is_the_one_connected_to() -> None:
    """DNS rebinding: the name is resolved once, by the guard; the connection goes to that address (the
    system resolver has never heard of the name, so a second lookup would fail)."""
    with scripted() as server:
        server.answer = lambda r: (200, {"Docker-Distribution-API-Version": "registry/2.0"}, b"{}")
        port = server.url.rsplit(":", 1)[1]
        names = {"registry.invalid": ["127.0.0.1"]}
        allowed = AddressGuard(["127.0.0.0/8"], resolver=lambda host, _port: names[host])
        remote = HttpRemoteRegistry(f"http://registry.invalid:{port}", guard=allowed, timeouts=FAST)
        assert remote.check().api_version == "registry/2.0"
        assert server.seen[0].headers["host"] == f"registry.invalid:{port}"
        refusing = AddressGuard(resolver=lambda host, _port: names[host])
        with pytest.raises(UpstreamAddressRefused):
            HttpRemoteRegistry(f"http://registry.invalid:{port}", guard=refusing, timeouts=FAST).check()


def test_a_redirect_to_another_scheme_is_refused() -> None:
    with scripted() as registry:
        registry.answer = lambda r: (302, {"Location": "file:///etc/passwd"}, b"")
        remote = HttpRemoteRegistry(registry.url, guard=LOOPBACK, timeouts=FAST)
        with pytest.raises(UpstreamInvalid):
            remote.head_blob("team/app", BLOB_DIGEST)


# --- credentials and redirects -----------------------------------------------------------------
def test_credentials_stay_with_the_registry_when_a_blob_redirects_to_storage() -> None:
    with scripted("127.0.0.1") as registry, scripted("127.0.0.2") as storage:

        def registry_answer(request: Request) -> Answer:
            if request.headers.get("authorization") != basic("u", "p"):
                return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
            return 307, {"Location": f"{storage.url}/presigned?sig=x"}, b""

        registry.answer = registry_answer
        storage.answer = lambda r: (200, {}, BLOB)
        remote = HttpRemoteRegistry(
            registry.url, Credentials("basic", "u", "p"), guard=LOOPBACK, timeouts=FAST
        )
        with remote.open_blob("team/app", BLOB_DIGEST) as stream:
            assert b"".join(stream.chunks()) == BLOB
        assert [r.path for r in storage.seen] == ["/presigned?sig=x"]
        assert "authorization" not in storage.seen[0].headers


# --- the token flow ----------------------------------------------------------------------------
class TokenRegistry:
    """A registry and its token server in one: tokens live `lifetime` seconds; `revoke()` makes the
    registry refuse every token issued so far."""

    def __init__(self, server: Scripted, lifetime: int | None = 300) -> None:
        self.server = server
        self.lifetime = lifetime
        self.issued: list[tuple[str, str]] = []  # (token, scope)
        self.valid: set[str] = set()
        server.answer = self.answer

    def revoke(self) -> None:
        self.valid.clear()

    def token_requests(self) -> list[Request]:
        return [r for r in self.server.seen if r.path.startswith("/token")]

    def answer(self, request: Request) -> Answer:
        if request.path.startswith("/token"):
            if request.headers.get("authorization") != basic("u", "p"):
                return 401, {}, b""
            token = f"t{len(self.issued)}"
            self.issued.append((token, request.path))
            self.valid.add(token)
            body: dict[str, object] = {"token": token}
            if self.lifetime is not None:
                body["expires_in"] = self.lifetime
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid:
            scope = "repository:team/app:pull" if "/team/app/" in request.path else ""
            challenge = f'Bearer realm="{self.server.url}/token",service="reg"' + (
                f',scope="{scope}"' if scope else ""
            )
            return 401, {"WWW-Authenticate": challenge}, b""
        headers = {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Docker-Content-Digest": MANIFEST_DIGEST,
        }
        return 200, headers, MANIFEST


def test_a_token_is_fetched_once_per_scope_and_reused() -> None:
    with scripted() as server:
        registry = TokenRegistry(server)
        remote = HttpRemoteRegistry(server.url, Credentials("basic", "u", "p"), guard=LOOPBACK, timeouts=FAST)
        for _ in range(3):
            assert remote.get_manifest("team/app", "v1").data == MANIFEST
        (token_request,) = registry.token_requests()
        assert (
            "service=reg" in token_request.path
            and "scope=repository%3Ateam%2Fapp%3Apull" in token_request.path
        )
        assert token_request.headers["authorization"] == basic("u", "p")
        # After the first, each request carried the token up front: no more 401s.
        assert [r.path for r in server.seen].count("/v2/team/app/manifests/v1") == 4


def test_a_revoked_token_is_replaced_once_and_the_request_succeeds() -> None:
    with scripted() as server:
        registry = TokenRegistry(server)
        remote = HttpRemoteRegistry(server.url, Credentials("basic", "u", "p"), guard=LOOPBACK, timeouts=FAST)
        remote.head_manifest("team/app", "v1")
        registry.revoke()
        assert remote.head_manifest("team/app", "v1").digest == MANIFEST_DIGEST
        assert len(registry.token_requests()) == 2


def test_an_expired_token_is_renewed_before_use() -> None:
    with scripted() as server:
        registry = TokenRegistry(server, lifetime=1)  # used for half its life
        remote = HttpRemoteRegistry(server.url, Credentials("basic", "u", "p"), guard=LOOPBACK, timeouts=FAST)
        remote.head_manifest("team/app", "v1")
        time.sleep(0.6)
        remote.head_manifest("team/app", "v1")
        assert len(registry.token_requests()) == 2
        # Renewed up front: the second request was not refused first.
        assert [r.path for r in server.seen].count("/v2/team/app/manifests/v1") == 3


def test_refused_credentials_are_unauthorized_not_a_loop() -> None:
    with scripted() as server:
        registry = TokenRegistry(server)
        remote = HttpRemoteRegistry(
            server.url, Credentials("basic", "u", "wrong"), guard=LOOPBACK, timeouts=FAST
        )
        with pytest.raises(UpstreamUnauthorized):
            remote.get_manifest("team/app", "v1")
        assert len(registry.token_requests()) == 1 and len(server.seen) == 2


# --- bounded time and sizes --------------------------------------------------------------------
@contextmanager
def silent_server(trickle: bytes | None = None) -> Iterator[str]:
    """Accepts connections, then says nothing (or `trickle`s bytes of headers, one every 0.3 s)."""
    stop = threading.Event()

    def send(connection: socket.socket) -> None:
        for byte in trickle or b"":
            if stop.wait(0.3):
                return
            connection.sendall(bytes([byte]))
        stop.wait(10)

    with raw_server(send) as url:
        try:
            yield url
        finally:
            stop.set()


def test_a_silent_upstream_times_out() -> None:
    with silent_server() as url:
        remote = HttpRemoteRegistry(url, guard=LOOPBACK, timeouts=Timeouts(connect=1, read=1, total=5))
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            remote.check()
        assert time.monotonic() - started < 3


def test_a_trickling_upstream_is_cut_off_at_the_total() -> None:
    """Each byte comes well within the read timeout; the total still ends the request."""
    with silent_server(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 200) as url:
        remote = HttpRemoteRegistry(url, guard=LOOPBACK, timeouts=Timeouts(connect=1, read=2, total=1.5))
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            remote.check()
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(("status", "error"), [(429, UpstreamUnavailable), (503, UpstreamUnavailable),
                                               (400, UpstreamError)])  # fmt: skip
def test_upstream_failures_are_named(status: int, error: type[UpstreamError]) -> None:
    with scripted() as server:
        server.answer = lambda r: (status, {}, b"")
        remote = HttpRemoteRegistry(server.url, guard=LOOPBACK, timeouts=FAST)
        with pytest.raises(error) as raised:
            remote.head_manifest("team/app", "v1")
        assert str(status) in str(raised.value)


def test_an_oversized_manifest_is_refused_without_reading_it_all() -> None:
    with scripted() as server:
        server.answer = lambda r: (200, {"Content-Type": "application/json"}, b" " * (5 << 20))
        remote = HttpRemoteRegistry(server.url, guard=LOOPBACK, timeouts=FAST)
        with pytest.raises(UpstreamInvalid):
            remote.get_manifest("team/app", "v1")


def test_manifest_bytes_must_match_the_digest_asked_for() -> None:
    with scripted() as server:
        server.answer = lambda r: (200, {"Content-Type": "application/json"}, b'{"tampered": true}')
        remote = HttpRemoteRegistry(server.url, guard=LOOPBACK, timeouts=FAST)
        with pytest.raises(UpstreamError, match="do not match"):
            remote.get_manifest("team/app", MANIFEST_DIGEST)


def test_a_tag_list_page_on_another_host_is_not_followed() -> None:
    with scripted("127.0.0.1") as registry, scripted("127.0.0.2") as elsewhere:
        link = f'<{elsewhere.url}/v2/team/app/tags/list?last=a>; rel="next"'
        registry.answer = lambda r: (200, {"Link": link}, b'{"name": "team/app", "tags": ["a"]}')
        remote = HttpRemoteRegistry(
            registry.url, Credentials("token", secret="s"), guard=LOOPBACK, timeouts=FAST
        )
        with pytest.raises(UpstreamError, match="another host"):
            remote.list_tags("team/app")
        assert elsewhere.seen == []


# --- TLS options ---------------------------------------------------------------------------------
def test_tls_is_verified_against_the_system_and_the_endpoints_ca(tmp_path: Path) -> None:
    certs = dockyard_cert("127.0.0.1", tmp_path / "certs")
    other = dockyard_cert("127.0.0.1", tmp_path / "other")
    with scripted(tls=certs) as server:
        server.answer = lambda r: (200, {"Docker-Distribution-API-Version": "registry/2.0"}, b"{}")

        def check(tls: TLSOptions) -> str | None:
            remote = HttpRemoteRegistry(server.url, guard=LOOPBACK, tls=tls, timeouts=FAST)
            try:
                return remote.check().api_version
            finally:
                remote.close()

        with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            check(TLSOptions())  # a private CA the system does not trust
        with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            check(TLSOptions(ca_pem=(other / "ca.crt").read_text()))
        assert check(TLSOptions(ca_pem=(certs / "ca.crt").read_text())) == "registry/2.0"
        assert check(TLSOptions(verify=False)) == "registry/2.0"
