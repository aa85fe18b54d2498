"""Notation (Notary Project) signatures against a real server: a CA and code-signing certificates made
with `openssl`, JWS envelopes signed with openssl (ES256 and PS256) and pushed as notation pushes them
(a referrer with artifactType application/vnd.cncf.notary.signature); the project's trust store holds
the CA. Tampered, mis-addressed, expired, wrongly issued or mislabelled envelopes are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cosign import Certificate, jws_envelope, make_ca, make_leaf, push_notation
from tests.support.ociclient import OCIClient, PushedManifest, bearer_client, describe
from tests.support.server import RunningServer

ADMIN = ("admin", "notation-Passw0rd")
PROJECT = "nv"
REPO = "nv/app"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from tests.support.server import start_server

    running = start_server(
        tmp_path_factory.mktemp("notation"),
        {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    api = httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN)
    assert api.post("/projects", json={"name": PROJECT}).status_code == 201
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Certificate]:
    workdir = tmp_path_factory.mktemp("pki")
    ca = make_ca(workdir, "release-ca")
    other = make_ca(workdir, "other-ca")
    return {
        "ca": ca,
        "other": other,
        "ec": make_leaf(workdir, "signer-ec", ca),
        "rsa": make_leaf(workdir, "signer-rsa", ca, kind="rsa"),
        "tls": make_leaf(workdir, "server-cert", ca, usage="serverAuth"),
        "stranger": make_leaf(workdir, "stranger", other),
    }


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=60) as client:
        yield client


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with bearer_client(server.url, ADMIN, (REPO,)) as http:
        yield OCIClient(http)


def verdict(api: httpx.Client, reference: str) -> dict[str, Any]:
    answer = api.get(f"/repositories/{REPO}/artifacts/{reference}/signature")
    assert answer.status_code == 200, describe(answer)
    return dict(answer.json())


def target(image: PushedManifest) -> dict[str, Any]:
    return image.descriptor()


def test_notation_signatures_verify_against_the_trust_store(
    api: httpx.Client, oci: OCIClient, pki: dict[str, Certificate], tmp_path: Path
) -> None:
    image = oci.push_image(REPO, "v1", seed="notation")
    push_notation(oci, REPO, image, jws_envelope(pki["ec"], [pki["ec"], pki["ca"]], target(image), tmp_path))
    before = verdict(api, "v1")
    assert before["status"] == "invalid" and "trust store has no certificates" in before["reason"]
    added = api.post(
        f"/projects/{PROJECT}/signing-keys", json={"name": "release-ca", "public_key": pki["ca"].pem}
    )
    assert added.status_code == 201, describe(added)
    assert added.json()["algorithm"] == "x509-certificate"
    try:
        result = verdict(api, "v1")
        assert (result["status"], result["key"], result["cached"]) == ("verified", "release-ca", False), (
            result
        )
        # The chain may stop at the signing certificate: the store's CA issued it.
        rsa_image = oci.push_image(REPO, "rsa", seed="notation-rsa")
        push_notation(
            oci, REPO, rsa_image, jws_envelope(pki["rsa"], [pki["rsa"]], target(rsa_image), tmp_path)
        )
        rsa = verdict(api, "rsa")
        assert (rsa["status"], rsa["key"]) == ("verified", "release-ca"), rsa
    finally:
        assert api.delete(f"/projects/{PROJECT}/signing-keys/release-ca").status_code == 204
    gone = verdict(api, "v1")
    assert gone["status"] == "invalid" and gone["cached"] is False


def test_bad_notation_signatures_are_refused(
    api: httpx.Client, oci: OCIClient, pki: dict[str, Certificate], tmp_path: Path
) -> None:
    added = api.post(
        f"/projects/{PROJECT}/signing-keys", json={"name": "release-ca", "public_key": pki["ca"].pem}
    )
    assert added.status_code == 201, describe(added)
    ec, ca = pki["ec"], pki["ca"]
    cases: list[tuple[str, Any, str]] = [
        ("tampered", lambda t: jws_envelope(ec, [ec, ca], t, tmp_path, tamper=True), "does not verify"),
        ("stranger", lambda t: jws_envelope(pki["stranger"], [pki["stranger"], pki["other"]], t, tmp_path),
         "does not lead to a certificate of the project's trust store"),
        ("tls-cert", lambda t: jws_envelope(pki["tls"], [pki["tls"], ca], t, tmp_path), "code signing"),
        ("alg", lambda t: jws_envelope(ec, [ec, ca], t, tmp_path, alg="ES384"), "does not match"),
        ("expired", lambda t: jws_envelope(
            ec, [ec, ca], t, tmp_path,
            headers={"io.cncf.notary.expiry": "2020-01-01T00:00:00Z",
                     "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]},
        ), "expired"),
        ("unknown-crit", lambda t: jws_envelope(
            ec, [ec, ca], t, tmp_path,
            headers={"io.cncf.notary.verificationPlugin": "x",
                     "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"]},
        ), "critical headers not understood"),
        ("wrong-chain", lambda t: jws_envelope(ec, [ec, pki["other"]], t, tmp_path), "not issued by"),
    ]  # fmt: skip
    try:
        for tag, make, reason in cases:
            image = oci.push_image(REPO, tag, seed=f"bad-{tag}")
            push_notation(oci, REPO, image, make(target(image)))
            result = verdict(api, tag)
            assert result["status"] == "invalid" and reason in result["reason"], (tag, result)
        other = oci.push_image(REPO, "other-target", seed="other-target")
        image = oci.push_image(REPO, "wrong-digest", seed="wrong-digest")
        push_notation(oci, REPO, image, jws_envelope(ec, [ec, ca], target(other), tmp_path))
        result = verdict(api, "wrong-digest")
        assert (
            result["status"] == "invalid" and f"names {other.digest}, not this artifact" in result["reason"]
        )
        garbage = oci.push_image(REPO, "garbage", seed="garbage")
        push_notation(oci, REPO, garbage, b'{"payload": 1}')
        assert "not a JWS JSON envelope" in verdict(api, "garbage")["reason"]
    finally:
        api.delete(f"/projects/{PROJECT}/signing-keys/release-ca")


def test_trust_store_entries_are_single_certificates(api: httpx.Client, pki: dict[str, Certificate]) -> None:
    two = pki["ca"].pem + pki["other"].pem
    answer = api.post(f"/projects/{PROJECT}/signing-keys", json={"name": "bundle", "public_key": two})
    assert answer.status_code == 400 and "one certificate" in answer.text, describe(answer)
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    answer = api.post(f"/projects/{PROJECT}/signing-keys", json={"name": "broken", "public_key": broken})
    assert answer.status_code == 400 and "not a PEM certificate" in answer.text, describe(answer)
