"""Notation (Notary Project) signatures against a real server: a CA and code-signing certificates made
with `openssl`, JWS envelopes signed with openssl (ES256 and PS256) and pushed as notation pushes them
(a referrer with artifactType application/vnd.cncf.notary.signature); the project's trust store holds
the CA. Tampered, mis-addressed, expired, wrongly issued or mislabelled envelopes are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cosign import Certificate, jws_envelope, make_ca, make_leaf, push_notation
from tests.support.ociclient import OCIClient, PushedManifest, bearer_client, describe
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

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
    api = httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT)
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
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
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


# --- trust policies ---------------------------------------------------------------------------------
OTHER_REPO = "nv/tools"
ACME = "/C=US/ST=WA/O=acme/CN=builder"


def trust_policy(*policies: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.0", "trustPolicies": list(policies)}


def entry(
    name: str, scopes: list[str], level: str, stores: list[str], identities: list[str], **verification: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "registryScopes": scopes,
        "signatureVerification": {"level": level, **verification},
        "trustStores": stores,
        "trustedIdentities": identities,
    }


@pytest.fixture
def policy_pki(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Certificate]
) -> Iterator[dict[str, Certificate]]:
    """The release CA in the project's store `acme`, the other CA in the store of its own name; signers
    of both, one with acme's subject, one with another organisation's, one naming a CRL."""
    workdir = tmp_path_factory.mktemp("policy-pki")
    ca = pki["ca"]
    certs = {
        "acme": make_leaf(workdir, "acme-builder", ca, subject=ACME),
        "evil": make_leaf(workdir, "evil-builder", ca, subject="/C=US/ST=WA/O=evil/CN=builder"),
        "crl": make_leaf(
            workdir,
            "crl-builder",
            ca,
            subject=ACME,
            extra="crlDistributionPoints=URI:http://127.0.0.1:9/ca.crl\n",
        ),
        "stranger": pki["stranger"],
    }
    with httpx.Client(base_url=_api_url(), auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        added = api.post(
            f"/projects/{PROJECT}/signing-keys",
            json={"name": "release-ca", "public_key": ca.pem, "trust_store": "acme"},
        )
        assert added.status_code == 201 and added.json()["trust_store"] == "acme", describe(added)
        other = api.post(
            f"/projects/{PROJECT}/signing-keys", json={"name": "other-ca", "public_key": pki["other"].pem}
        )
        assert other.status_code == 201 and other.json()["trust_store"] == "other-ca", describe(other)
        try:
            yield certs
        finally:
            api.delete(f"/projects/{PROJECT}/trust-policy")
            api.delete(f"/projects/{PROJECT}/signing-keys/release-ca")
            api.delete(f"/projects/{PROJECT}/signing-keys/other-ca")


_SERVER_URL: list[str] = []


def _api_url() -> str:
    return f"{_SERVER_URL[0]}/api/v1"


@pytest.fixture(autouse=True)
def _remember_url(server: RunningServer) -> None:
    _SERVER_URL[:] = [server.url]


def signed(
    oci: OCIClient,
    repo: str,
    tag: str,
    signer: Certificate,
    chain: list[Certificate],
    tmp_path: Path,
    **options: Any,
) -> None:
    image = oci.push_image(repo, tag, seed=f"policy-{repo}-{tag}")
    push_notation(oci, repo, image, jws_envelope(signer, chain, target(image), tmp_path, **options))


def verdict_in(api: httpx.Client, repo: str, reference: str) -> dict[str, Any]:
    answer = api.get(f"/repositories/{repo}/artifacts/{reference}/signature")
    assert answer.status_code == 200, describe(answer)
    return dict(answer.json())


def test_a_trust_policy_names_the_stores_and_signers_each_repository_trusts(
    server: RunningServer,
    api: httpx.Client,
    policy_pki: dict[str, Certificate],
    pki: dict[str, Certificate],
    tmp_path: Path,
) -> None:
    ca, other = pki["ca"], pki["other"]
    with bearer_client(server.url, ADMIN, (REPO, OTHER_REPO)) as http:
        oci = OCIClient(http)
        signed(oci, REPO, "acme", policy_pki["acme"], [policy_pki["acme"], ca], tmp_path)
        signed(oci, REPO, "evil", policy_pki["evil"], [policy_pki["evil"], ca], tmp_path)
        signed(oci, REPO, "stranger", pki["stranger"], [pki["stranger"], other], tmp_path)
        signed(oci, OTHER_REPO, "stranger", pki["stranger"], [pki["stranger"], other], tmp_path)
    # Without a policy any certificate of the project's stores vouches for any signer.
    assert verdict_in(api, REPO, "stranger")["status"] == "verified"
    document = trust_policy(
        entry(
            "app", [f"registry.example/{REPO}"], "strict", ["ca:acme"], ["x509.subject: C=US, ST=WA, O=acme"]
        ),
        entry("rest", ["*"], "strict", ["ca:other-ca"], ["*"]),
    )
    answer = api.put(f"/projects/{PROJECT}/trust-policy", json=document)
    assert answer.status_code == 200, describe(answer)
    assert api.get(f"/projects/{PROJECT}/trust-policy").json()["trustPolicies"][0]["name"] == "app"
    good = verdict_in(api, REPO, "acme")
    assert (good["status"], good["key"], good["cached"]) == ("verified", "release-ca", False), good
    evil = verdict_in(api, REPO, "evil")
    assert evil["status"] == "invalid" and "not a trusted identity of trust policy 'app'" in evil["reason"], (
        evil
    )
    stranger = verdict_in(api, REPO, "stranger")
    assert stranger["status"] == "invalid", stranger
    assert "does not lead to a certificate of ca:acme" in stranger["reason"], stranger
    elsewhere = verdict_in(api, OTHER_REPO, "stranger")
    assert (elsewhere["status"], elsewhere["key"]) == ("verified", "other-ca"), elsewhere
    # Only the exact scope: a repository no policy covers has no notation signature verified.
    narrow = trust_policy(entry("app", [REPO], "strict", ["ca:acme"], ["*"]))
    assert api.put(f"/projects/{PROJECT}/trust-policy", json=narrow).status_code == 200
    uncovered = verdict_in(api, OTHER_REPO, "stranger")
    assert (
        uncovered["status"] == "invalid"
        and f"no trust policy of the project applies to {OTHER_REPO}" in uncovered["reason"]
    )
    assert api.delete(f"/projects/{PROJECT}/trust-policy").status_code == 204
    assert api.get(f"/projects/{PROJECT}/trust-policy").status_code == 404
    assert verdict_in(api, REPO, "stranger")["status"] == "verified"


def test_the_level_decides_what_is_enforced_and_what_is_only_noted(
    server: RunningServer,
    api: httpx.Client,
    policy_pki: dict[str, Certificate],
    pki: dict[str, Certificate],
    tmp_path: Path,
) -> None:
    ca, acme = pki["ca"], policy_pki["acme"]
    expired = {
        "headers": {
            "io.cncf.notary.expiry": "2020-01-01T00:00:00Z",
            "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
        }
    }
    with bearer_client(server.url, ADMIN, (REPO,)) as http:
        oci = OCIClient(http)
        signed(oci, REPO, "expired", acme, [acme, ca], tmp_path, **expired)
        signed(oci, REPO, "crl", policy_pki["crl"], [policy_pki["crl"], ca], tmp_path)
        signed(oci, REPO, "outsider", pki["stranger"], [pki["stranger"], pki["other"]], tmp_path)
        oci.push_image(REPO, "unsigned", seed="policy-unsigned")

    def level(name: str, **verification: Any) -> None:
        document = trust_policy(entry("app", [REPO], name, ["ca:acme"], ["*"], **verification))
        answer = api.put(f"/projects/{PROJECT}/trust-policy", json=document)
        assert answer.status_code == 200, describe(answer)

    level("strict")
    assert "expired at 2020-01-01" in verdict_in(api, REPO, "expired")["reason"]
    crl = verdict_in(api, REPO, "crl")
    assert crl["status"] == "invalid" and "revocation status is unknown" in crl["reason"], crl
    level("strict", override={"revocation": "skip"})
    assert verdict_in(api, REPO, "crl")["status"] == "verified"
    level("permissive")
    logged = verdict_in(api, REPO, "expired")
    assert logged["status"] == "verified" and "expiry logged: the signature expired" in logged["reason"], (
        logged
    )
    crl = verdict_in(api, REPO, "crl")
    assert crl["status"] == "verified" and "revocation logged" in crl["reason"], crl
    assert verdict_in(api, REPO, "outsider")["status"] == "invalid"  # authenticity stays enforced
    level("audit")
    audit = verdict_in(api, REPO, "outsider")
    assert (audit["status"], audit["key"]) == ("verified", None) and "authenticity logged" in audit[
        "reason"
    ], audit
    assert verdict_in(api, REPO, "unsigned")["status"] == "unsigned"  # audit verifies what is there only
    skip = {"name": "app", "registryScopes": [REPO], "signatureVerification": {"level": "skip"}}
    assert api.put(f"/projects/{PROJECT}/trust-policy", json=trust_policy(skip)).status_code == 200
    skipped = verdict_in(api, REPO, "unsigned")
    assert skipped["status"] == "verified" and "skips signature verification" in skipped["reason"], skipped


def test_invalid_trust_policies_are_refused_in_the_api_error_format(api: httpx.Client) -> None:
    bad = [
        (trust_policy({"name": "g", "registryScopes": ["*"], "signatureVerification": {"level": "skip"}}),
         "global scope"),
        (trust_policy(entry("a", ["*"], "strict", ["tsa:clock"], ["*"])), "stores of type ca"),
        (trust_policy(entry("a", ["*"], "strict", ["ca:x"], ["x509.subject: CN=me"])), "lacks C, ST, O"),
        ({"version": "0.9"}, '"version" must be "1.0"'),
    ]  # fmt: skip
    for document, message in bad:
        answer = api.put(f"/projects/{PROJECT}/trust-policy", json=document)
        assert answer.status_code == 400, describe(answer)
        (error,) = answer.json()["errors"]
        assert message in error["message"], (message, error)
    assert api.get(f"/projects/{PROJECT}/trust-policy").status_code == 404
    missing = api.put(
        "/projects/no-such-project/trust-policy",
        json=trust_policy(entry("a", ["*"], "strict", ["ca:x"], ["*"])),
    )
    assert missing.status_code == 404, describe(missing)


# The CLI opens the database itself but runs the same service as the API's routes, whose database work
# runs on PostgreSQL in this module's API tests: the SQLite pass alone runs it (tests/conftest.py).
@pytest.mark.db_independent
def test_the_cli_sets_shows_and_deletes_a_trust_policy(
    server: RunningServer, api: httpx.Client, pki: dict[str, Certificate], tmp_path: Path
) -> None:
    from tests.integration.test_signatures import run

    added = run(server, "trust", "key", "add", PROJECT, "cli-ca", pki["ca"].cert, "--trust-store", "builds")
    assert added.returncode == 0, added.stderr
    try:
        keys = {key["name"]: key for key in api.get(f"/projects/{PROJECT}/signing-keys").json()["keys"]}
        assert keys["cli-ca"]["trust_store"] == "builds"
        path = tmp_path / "trustpolicy.json"
        path.write_text(json.dumps(trust_policy(entry("builds", ["*"], "permissive", ["ca:builds"], ["*"]))))
        assert run(server, "trust", "policy", "set", PROJECT, path).returncode == 0
        shown = run(server, "trust", "policy", "show", PROJECT)
        assert json.loads(shown.stdout)["trustPolicies"][0]["trustStores"] == ["ca:builds"], shown
        path.write_text(json.dumps(trust_policy(entry("builds", ["*"], "skip", ["ca:builds"], ["*"]))))
        refused = run(server, "trust", "policy", "set", PROJECT, path)
        assert refused.returncode == 1 and "cannot apply to the global scope" in refused.stderr, refused
        assert run(server, "trust", "policy", "delete", PROJECT).returncode == 0
        missing = run(server, "trust", "policy", "show", PROJECT)
        assert missing.returncode == 1 and "no notation trust policy" in missing.stderr, missing
    finally:
        assert run(server, "trust", "key", "delete", PROJECT, "cli-ca").returncode == 0
