"""registry:2's auth.token with rootcertbundle: external tokens, trusted as registry:2 would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from dockyard.auth.external import ExternalTokenVerifier, load_certificate_bundle, rfc7638_thumbprint
from dockyard.auth.scopes import repository_scope
from dockyard.auth.tokens import TokenInvalid, libtrust_key_id
from dockyard.errors import ConfigError

ISSUER, SERVICE = "auth.example", "registry.example"
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def certificate(
    key: Key, name: str, issuer: tuple[x509.Certificate, Key] | None = None, ca: bool = False, days: int = 30
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "jlhawn",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "1",
        "access": [{"type": "repository", "name": "samalba/my-app", "actions": ["pull", "push"]}],
    }
    base.update(overrides)
    return base


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.fixture(scope="module")
def signer() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, certificate(key, "token signer")


@pytest.fixture
def verifier(signer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> ExternalTokenVerifier:
    return ExternalTokenVerifier([signer[1]], issuer=ISSUER, service=SERVICE)


def test_kid_as_libtrust_fingerprint_like_registry2_issuers(
    signer: Any, verifier: ExternalTokenVerifier
) -> None:
    key = signer[0]
    token = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": libtrust_key_id(key.public_key())})
    verified = verifier.verify(token)
    assert verified.principal.name == "jlhawn"
    assert verified.access.permits(repository_scope("samalba/my-app", "pull", "push"))
    assert not verified.access.permits(repository_scope("samalba/my-app", "delete"))


def test_kid_as_rfc7638_thumbprint_like_distribution3(signer: Any, verifier: ExternalTokenVerifier) -> None:
    key = signer[0]
    token = jwt.encode(
        claims(), key, algorithm="ES256", headers={"kid": rfc7638_thumbprint(key.public_key())}
    )
    assert verifier.verify(token).principal.name == "jlhawn"


def test_rsa_signer(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(certificate(key, "rsa signer").public_bytes(serialization.Encoding.PEM))
    verifier = ExternalTokenVerifier.from_bundle(bundle, issuer=ISSUER, service=SERVICE)
    token = jwt.encode(
        claims(), key, algorithm="RS256", headers={"kid": rfc7638_thumbprint(key.public_key())}
    )
    assert verifier.verify(token).principal.name == "jlhawn"


def test_x5c_chain_to_a_root_of_the_bundle() -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(ca_key, "token CA", ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(leaf_key, "signer", issuer=(ca, ca_key))
    verifier = ExternalTokenVerifier([ca], issuer=ISSUER, service=SERVICE)
    token = jwt.encode(claims(), leaf_key, algorithm="ES256", headers={"x5c": [der_b64(leaf)]})
    assert verifier.verify(token).principal.name == "jlhawn"

    # Through an intermediate CA the chain names.
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = certificate(mid_key, "intermediate", issuer=(ca, ca_key), ca=True)
    leaf2 = certificate(leaf_key, "signer 2", issuer=(mid, mid_key))
    token = jwt.encode(claims(), leaf_key, algorithm="ES256", headers={"x5c": [der_b64(leaf2), der_b64(mid)]})
    assert verifier.verify(token).principal.name == "jlhawn"

    # An "intermediate" that is no CA cannot issue.
    not_ca = certificate(mid_key, "not a ca", issuer=(ca, ca_key), ca=False)
    leaf3 = certificate(leaf_key, "signer 3", issuer=(not_ca, mid_key))
    token = jwt.encode(
        claims(), leaf_key, algorithm="ES256", headers={"x5c": [der_b64(leaf3), der_b64(not_ca)]}
    )
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


def test_x5c_chain_from_a_foreign_ca_is_refused(verifier: ExternalTokenVerifier) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = certificate(other_key, "someone else's CA", ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(leaf_key, "signer", issuer=(other_ca, other_key))
    token = jwt.encode(
        claims(), leaf_key, algorithm="ES256", headers={"x5c": [der_b64(leaf), der_b64(other_ca)]}
    )
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


@pytest.mark.parametrize(
    "bad",
    [
        {"iss": "someone-else"},
        {"aud": "another-registry"},
        {"exp": -120},  # seconds from now: past registry:2's 60 s leeway
        {"nbf": 120},
    ],
)
def test_wrong_issuer_audience_or_time_is_refused(
    signer: Any, verifier: ExternalTokenVerifier, bad: dict
) -> None:
    # Times are taken when the test runs, not when it is collected (a long run would age them).
    bad = {key: int(time.time()) + value if key in ("exp", "nbf") else value for key, value in bad.items()}
    token = jwt.encode(
        claims(**bad), signer[0], algorithm="ES256", headers={"kid": libtrust_key_id(signer[0].public_key())}
    )
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


def test_expiry_within_the_leeway_is_accepted_as_registry2_does(
    signer: Any, verifier: ExternalTokenVerifier
) -> None:
    token = jwt.encode(
        claims(exp=int(time.time()) - 20),
        signer[0],
        algorithm="ES256",
        headers={"kid": libtrust_key_id(signer[0].public_key())},
    )
    assert verifier.verify(token).principal.name == "jlhawn"


def test_unknown_key_and_no_key_are_refused(verifier: ExternalTokenVerifier) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    for headers in ({"kid": libtrust_key_id(stranger.public_key())}, {}):
        with pytest.raises(TokenInvalid):
            verifier.verify(jwt.encode(claims(), stranger, algorithm="ES256", headers=headers))


def test_hs256_made_with_the_public_certificate_is_refused(
    signer: Any, verifier: ExternalTokenVerifier
) -> None:
    public_pem = signer[1].public_bytes(serialization.Encoding.PEM)
    kid = libtrust_key_id(signer[0].public_key())
    encode = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")  # noqa: E731
    signing_input = encode({"alg": "HS256", "typ": "JWT", "kid": kid}) + b"." + encode(claims())
    mac = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(TokenInvalid):
        verifier.verify((signing_input + b"." + mac).decode())


def test_alg_none_is_refused(signer: Any, verifier: ExternalTokenVerifier) -> None:
    headers = {"kid": libtrust_key_id(signer[0].public_key())}
    token = jwt.encode(claims(), None, algorithm="none", headers=headers)  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid):
        verifier.verify(token)


def test_bundle_without_certificates_is_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="rootcertbundle"):
        load_certificate_bundle(empty)
    with pytest.raises(ConfigError, match="rootcertbundle"):
        load_certificate_bundle(tmp_path / "missing.pem")
