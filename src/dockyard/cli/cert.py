"""`dockyard cert HOST`: a private CA and a server certificate for serving TLS, and where clients want the CA.

Typer-free: the CLI calls `run_cert_command` and prints what it returns.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825  # the longest validity Apple platforms accept for TLS server certificates
ALWAYS_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def make_certificates(host: str, out_dir: Path, extra_names: list[str] | None = None) -> CertPaths:
    """Write ca.crt/ca.key and server.crt/server.key (ECDSA P-256) into out_dir; keys are mode 0600.

    The server certificate names `host`, every extra name, localhost, 127.0.0.1 and ::1 (as DNS names or
    IP addresses, whichever each is). Existing files are overwritten.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockyard"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"dockyard CA for {host}"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names = x509.SubjectAlternativeName(subject_alt_names(host, extra_names or []))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(alt_names, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths = CertPaths(out_dir / "ca.crt", out_dir / "ca.key", out_dir / "server.crt", out_dir / "server.key")
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(paths.ca_key, _private_pem(ca_key), 0o600)
    _write(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(paths.server_key, _private_pem(server_key), 0o600)
    return paths


def subject_alt_names(host: str, extra_names: list[str]) -> list[x509.GeneralName]:
    """Each distinct name once, as an IP address when it parses as one, else a DNS name."""
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in [host, *extra_names, *ALWAYS_NAMES]:
        name = name.strip().strip("[]")
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name.lower()))
    return names


def registry_address(host: str, port: int) -> str:
    """How clients name the registry: host:port, with brackets around an IPv6 address; no port for 443."""
    try:
        shown = f"[{host}]" if ipaddress.ip_address(host.strip("[]")).version == 6 else host
    except ValueError:
        shown = host
    return shown if port == 443 else f"{shown}:{port}"


def cert_instructions(host: str, port: int, paths: CertPaths) -> str:
    """What to do with the files: trust the CA in docker/podman, serve the server pair."""
    address = registry_address(host, port)
    return f"""\
Wrote a private CA and a server certificate for {host}:
  CA certificate      {paths.ca_cert}
  CA key              {paths.ca_key}   (keep it secret; it can sign certificates clients will trust)
  server certificate  {paths.server_cert}
  server key          {paths.server_key}

Serve TLS with these lines in the config file:
  http:
    addr: ":{port}"
    tls:
      certificate: {paths.server_cert}
      key: {paths.server_key}
(or DOCKYARD_HTTP_TLS_CERTIFICATE={paths.server_cert} DOCKYARD_HTTP_TLS_KEY={paths.server_key})

Make clients trust the CA, on every machine that pulls or pushes:
  docker:                   sudo mkdir -p /etc/docker/certs.d/{address}
                            sudo cp {paths.ca_cert} /etc/docker/certs.d/{address}/ca.crt
  podman, skopeo, buildah:  sudo mkdir -p /etc/containers/certs.d/{address}
                            sudo cp {paths.ca_cert} /etc/containers/certs.d/{address}/ca.crt
  (rootless podman also reads ~/.config/containers/certs.d/{address}/ca.crt)
  other tools (curl, oras, helm): add {paths.ca_cert} to the system trust store, e.g. on Debian
                            sudo cp {paths.ca_cert} /usr/local/share/ca-certificates/dockyard-ca.crt
                            sudo update-ca-certificates
"""


def run_cert_command(host: str, out_dir: Path, port: int = 5000, extra_names: list[str] | None = None) -> str:
    """`dockyard cert HOST [--out DIR] [--port N] [--name NAME...]`: make the files, say what to do next."""
    paths = make_certificates(host, out_dir, extra_names)
    return cert_instructions(host, port, paths)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode so a private key is never readable by others, even for a moment.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # the umask may have narrowed the mode given to open()
