from __future__ import annotations

import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from dockyard.cli.cert import CertPaths, cert_instructions, make_certificates, run_cert_command


@contextmanager
def tls_server(paths: CertPaths) -> Iterator[int]:
    """A loopback TLS server that answers each connection with b"ok" after the handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(paths.server_cert, paths.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate: that is what some tests check

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def handshake(port: int, ca_file: Path, server_hostname: str) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.recv(2)


def test_server_certificate_verifies_against_the_ca_in_a_real_handshake(tmp_path: Path) -> None:
    paths = make_certificates("registry.example.test", tmp_path / "certs", ["alias.example.test", "10.0.0.7"])
    with tls_server(paths) as port:
        for name in ["registry.example.test", "alias.example.test", "localhost", "127.0.0.1", "10.0.0.7"]:
            assert handshake(port, paths.ca_cert, name) == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            handshake(port, paths.ca_cert, "other.example.test")


def test_a_different_ca_is_refused(tmp_path: Path) -> None:
    paths = make_certificates("registry.example.test", tmp_path / "one")
    other = make_certificates("registry.example.test", tmp_path / "two")
    with tls_server(paths) as port, pytest.raises(ssl.SSLCertVerificationError):
        handshake(port, other.ca_cert, "registry.example.test")


def test_certificate_contents_and_key_modes(tmp_path: Path) -> None:
    paths = make_certificates("192.168.1.20", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"ca.crt", "ca.key", "server.crt", "server.key"}
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    public_key = server.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days in (825, 826)
    assert server.issuer == ca.subject

    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"192.168.1.20", "127.0.0.1", "::1"}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_instructions_name_the_client_trust_paths_and_config(tmp_path: Path) -> None:
    paths = make_certificates("registry.example.test", tmp_path)
    text = cert_instructions("registry.example.test", 5443, paths)
    assert "/etc/docker/certs.d/registry.example.test:5443/ca.crt" in text
    assert "/etc/containers/certs.d/registry.example.test:5443/ca.crt" in text
    assert f"certificate: {paths.server_cert}" in text
    assert f"key: {paths.server_key}" in text
    assert "[::1]:5000" in run_cert_command("::1", tmp_path / "v6")
