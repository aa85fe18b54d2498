"""Signatures that verify, against a real server: keys and signatures made with `openssl` as cosign's
EXAMPLES.md does, pushed in both of cosign's forms (the `sha256-<hex>.sig` tag and the OCI 1.1
referrer), the verdict read through the management API and `dockyard trust verify`; every way a
signature can be wrong is refused with its reason, and no cached verdict outlives a key-set change."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.cosign import (
    KeyPair,
    make_key,
    payload,
    push_referrer,
    push_sig_tag,
    signature_layer,
)
from tests.support.ociclient import (
    OCI_INDEX,
    OCIClient,
    bearer_client,
    describe,
    index_manifest,
)
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "signatures-Passw0rd")
PROJECT = "sig"
REPOS = ("sig/app", "sig/other", "sig/multi")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from tests.support.server import start_server

    running = start_server(
        tmp_path_factory.mktemp("signatures"),
        {"auth": {"enabled": True}, "http": {"workers": 2}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    api = httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT)
    assert api.post("/projects", json={"name": PROJECT}).status_code == 201
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    workdir = tmp_path_factory.mktemp("keys")
    return {
        "ecdsa": make_key("ecdsa", workdir, "ecdsa"),
        "rsa": make_key("rsa", workdir, "rsa"),
        "ed25519": make_key("ed25519", workdir, "ed25519"),
        "stranger": make_key("ecdsa", workdir, "stranger"),
    }


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with bearer_client(server.url, ADMIN, REPOS) as http:
        yield OCIClient(http)


@pytest.fixture
def trusted(api: httpx.Client, keys: dict[str, KeyPair]) -> Iterator[None]:
    """The project trusts the ecdsa, rsa and ed25519 keys (not the stranger's)."""
    for kind in ("ecdsa", "rsa", "ed25519"):
        answer = api.post(
            f"/projects/{PROJECT}/signing-keys", json={"name": kind, "public_key": keys[kind].public_pem}
        )
        assert answer.status_code == 201, describe(answer)
    yield
    for key in api.get(f"/projects/{PROJECT}/signing-keys").json()["keys"]:
        api.delete(f"/projects/{PROJECT}/signing-keys/{key['name']}")


def refused(answer: httpx.Response, status: int, code: str) -> str:
    """The message of a management API error answer, after checking its status and code."""
    assert answer.status_code == status, describe(answer)
    errors = answer.json()["errors"]
    assert [error["code"] for error in errors] == [code], describe(answer)
    return str(errors[0]["message"])


def verdict(api: httpx.Client, repo: str, reference: str) -> dict[str, Any]:
    answer = api.get(f"/repositories/{repo}/artifacts/{reference}/signature")
    assert answer.status_code == 200, describe(answer)
    return dict(answer.json())


def test_unsigned_then_signed_by_tag_then_cached(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], trusted: None, tmp_path: Path
) -> None:
    image = oci.push_image("sig/app", "v1", seed="tag-form")
    first = verdict(api, "sig/app", "v1")
    assert first["status"] == "unsigned" and first["digest"] == image.digest, first
    assert first["reason"] == "no signature found"
    body = payload(image.digest)
    sig = push_sig_tag(
        oci,
        "sig/app",
        image.digest,
        [signature_layer(oci, "sig/app", body, keys["ecdsa"].sign(body, tmp_path))],
    )
    # A new signature manifest makes the "unsigned" verdict stale at once.
    signed = verdict(api, "sig/app", "v1")
    assert signed["status"] == "verified", signed
    assert (signed["key"], signed["signature"], signed["cached"]) == ("ecdsa", sig.digest, False)
    again = verdict(api, "sig/app", image.digest)
    assert again["status"] == "verified" and again["cached"] is True, again


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "ecdsa"])
def test_referrer_form_with_each_key_type(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], trusted: None, tmp_path: Path, kind: str
) -> None:
    image = oci.push_image("sig/app", f"ref-{kind}", seed=f"referrer-{kind}")
    body = payload(image.digest)
    layer = signature_layer(oci, "sig/app", body, keys[kind].sign(body, tmp_path))
    sig = push_referrer(oci, "sig/app", image, [layer])
    result = verdict(api, "sig/app", f"ref-{kind}")
    assert (result["status"], result["key"], result["signature"]) == ("verified", kind, sig.digest), result


def signed_with(
    oci: OCIClient, image_digest: str, key: KeyPair, body: bytes, tmp_path: Path, signature: Any = None
) -> None:
    sign_over = payload(image_digest)
    raw = key.sign(sign_over, tmp_path) if signature is None else signature
    push_sig_tag(oci, "sig/app", image_digest, [signature_layer(oci, "sig/app", body, raw)])


def test_bad_signatures_are_refused_with_the_reason(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], trusted: None, tmp_path: Path
) -> None:
    def case(seed: str) -> str:
        return oci.push_image("sig/app", seed, seed=seed).digest

    tampered = case("tampered")
    body = payload(tampered).replace(b"registry.example/app", b"registry.example/evil")
    signed_with(oci, tampered, keys["ecdsa"], body, tmp_path)
    wrong_digest = case("wrong-digest")
    other = case("other-image")
    body = payload(other)
    raw = keys["ecdsa"].sign(body, tmp_path)
    push_sig_tag(oci, "sig/app", wrong_digest, [signature_layer(oci, "sig/app", body, raw)])
    untrusted = case("untrusted")
    signed_with(oci, untrusted, keys["stranger"], payload(untrusted), tmp_path)
    truncated = case("truncated")
    good = keys["ecdsa"].sign(payload(truncated), tmp_path)
    signed_with(oci, truncated, keys["ecdsa"], payload(truncated), tmp_path, signature=good[:-8])
    garbage = case("garbage")
    signed_with(oci, garbage, keys["ecdsa"], payload(garbage), tmp_path, signature="not base64 at all!")
    wrong_type = case("wrong-type")
    body = payload(wrong_type).replace(b"cosign container image signature", b"atomic container signature")
    signed_with(oci, wrong_type, keys["ecdsa"], body, tmp_path, signature=keys["ecdsa"].sign(body, tmp_path))
    expected = {
        tampered: "the signature does not verify with any of the project's keys",
        wrong_digest: f"the payload names {other}, not this artifact",
        untrusted: "the signature does not verify with any of the project's keys",
        truncated: "the signature does not verify with any of the project's keys",
        garbage: "the signature is not base64",
        wrong_type: "the payload's critical.type is not 'cosign container image signature'",
    }
    for digest, reason in expected.items():
        result = verdict(api, "sig/app", digest)
        assert result["status"] == "invalid", (reason, result)
        assert reason in result["reason"], (reason, result)
        assert result["key"] is None


def test_a_removed_key_takes_its_verdicts_with_it(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], trusted: None, tmp_path: Path
) -> None:
    image = oci.push_image("sig/app", "rotate", seed="removed-key")
    signed_with(oci, image.digest, keys["rsa"], payload(image.digest), tmp_path)
    before = verdict(api, "sig/app", "rotate")
    assert before["status"] == "verified" and before["key"] == "rsa"
    assert verdict(api, "sig/app", "rotate")["cached"] is True
    assert api.delete(f"/projects/{PROJECT}/signing-keys/rsa").status_code == 204
    after = verdict(api, "sig/app", "rotate")
    assert after["status"] == "invalid" and after["cached"] is False, after
    assert after["keyset_version"] > before["keyset_version"]
    assert "does not verify" in after["reason"]
    # Trusting it again is a new key set: verified again, never the old "invalid".
    added = api.post(
        f"/projects/{PROJECT}/signing-keys", json={"name": "rsa-again", "public_key": keys["rsa"].public_pem}
    )
    assert added.status_code == 201, describe(added)
    again = verdict(api, "sig/app", "rotate")
    assert (again["status"], again["key"], again["cached"]) == ("verified", "rsa-again", False)


def test_an_index_is_signed_when_the_index_is_signed(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], trusted: None, tmp_path: Path
) -> None:
    amd = oci.push_image("sig/multi", seed="amd64")
    arm = oci.push_image("sig/multi", seed="arm64")
    body = index_manifest(
        [
            amd.descriptor(platform={"os": "linux", "architecture": "amd64"}),
            arm.descriptor(platform={"os": "linux", "architecture": "arm64"}),
        ]
    )
    index = oci.push_manifest("sig/multi", "v1", body, OCI_INDEX)
    signed = payload(index.digest)
    layer = signature_layer(oci, "sig/multi", signed, keys["ed25519"].sign(signed, tmp_path))
    push_sig_tag(oci, "sig/multi", index.digest, [layer])
    result = verdict(api, "sig/multi", "v1")
    assert (result["status"], result["digest"], result["key"]) == ("verified", index.digest, "ed25519")
    # A platform manifest has a verdict of its own (a pull policy reads the index's for it).
    assert verdict(api, "sig/multi", amd.digest)["status"] == "unsigned"


def test_a_signature_in_another_repository_does_not_count(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], trusted: None, tmp_path: Path
) -> None:
    image = oci.push_image("sig/app", "elsewhere", seed="elsewhere")
    # The same image in another repository: its blobs, then its manifest as it is.
    oci.push_blob(
        "sig/other", json.dumps({"architecture": "amd64", "os": "linux", "seed": "elsewhere"}).encode()
    )
    oci.push_blob("sig/other", b"layer of sig/app elsewhere elsewhere")
    oci.push_manifest("sig/other", "elsewhere", image.body, image.media_type)
    body = payload(image.digest)
    push_sig_tag(
        oci,
        "sig/other",
        image.digest,
        [signature_layer(oci, "sig/other", body, keys["ecdsa"].sign(body, tmp_path))],
    )
    assert verdict(api, "sig/other", image.digest)["status"] == "verified"
    assert verdict(api, "sig/app", image.digest)["status"] == "unsigned"
    # Each repository keeps its own verdict on the digest: neither overwrote the other.
    other, app = verdict(api, "sig/other", image.digest), verdict(api, "sig/app", image.digest)
    assert (other["status"], other["cached"]) == ("verified", True), other
    assert (app["status"], app["cached"]) == ("unsigned", True), app


def test_no_trusted_keys_is_not_verified(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    image = oci.push_image("sig/app", "nokeys", seed="no-keys")
    signed_with(oci, image.digest, keys["ecdsa"], payload(image.digest), tmp_path)
    result = verdict(api, "sig/app", "nokeys")
    assert result["status"] == "invalid" and "the project trusts no keys" in result["reason"], result


def test_key_management_refuses_bad_keys(api: httpx.Client, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    path = f"/projects/{PROJECT}/signing-keys"
    private = keys["ecdsa"].private.read_text()
    small = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
        capture_output=True,
        check=True,
    ).stdout
    small_pub = subprocess.run(
        ["openssl", "pkey", "-pubout"], input=small, capture_output=True, check=True
    ).stdout
    p521 = subprocess.run(
        ["openssl", "ecparam", "-name", "secp521r1", "-genkey", "-noout"], capture_output=True, check=True
    ).stdout
    p521_pub = subprocess.run(
        ["openssl", "pkey", "-pubout"], input=p521, capture_output=True, check=True
    ).stdout
    for pem, why in [
        (private, "private key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        ("hello", "not a PEM public key"),
        (small_pub.decode(), "too small"),
        (p521_pub.decode(), "secp521r1"),
    ]:
        answer = api.post(path, json={"name": "bad", "public_key": pem})
        assert why in refused(answer, 400, "BAD_REQUEST"), answer.text
    bad_name = api.post(path, json={"name": "a/b", "public_key": keys["ecdsa"].public_pem})
    refused(bad_name, 400, "BAD_REQUEST")
    assert api.post(path, json={"name": "one", "public_key": keys["ecdsa"].public_pem}).status_code == 201
    try:
        refused(api.post(path, json={"name": "one", "public_key": keys["rsa"].public_pem}), 409, "CONFLICT")
        same = api.post(path, json={"name": "two", "public_key": keys["ecdsa"].public_pem})
        refused(same, 409, "CONFLICT")
        listed = api.get(path).json()
        assert [key["name"] for key in listed["keys"]] == ["one"]
        assert listed["keys"][0]["algorithm"] == "ecdsa-p256"
        assert listed["keys"][0]["fingerprint"].startswith("sha256:")
        assert api.get(f"{path}/one").json()["created_by"] == "admin"
    finally:
        assert api.delete(f"{path}/one").status_code == 204
    refused(api.delete(f"{path}/one"), 404, "NOT_FOUND")
    refused(api.get("/projects/nosuch/signing-keys"), 404, "NOT_FOUND")
    refused(api.get("/repositories/sig/app/artifacts/nosuchtag/signature"), 404, "NOT_FOUND")


def run(
    server: RunningServer, *args: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_dockyard(*args, "--config", server.config_path, input=stdin)


# The CLI opens the database itself but runs the same service as the API's routes, whose database work
# runs on PostgreSQL in this module's API tests: the SQLite pass alone runs it (tests/conftest.py).
@pytest.mark.db_independent
def test_cli_keys_and_verify(
    server: RunningServer, api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    image = oci.push_image("sig/app", "cli", seed="cli")
    assert run(server, "trust", "verify", "sig/app:cli").returncode == 3  # unsigned
    signed_with(oci, image.digest, keys["ed25519"], payload(image.digest), tmp_path)
    refused = run(server, "trust", "verify", "sig/app:cli")
    assert refused.returncode == 4 and "trusts no keys" in refused.stdout, refused
    pub = tmp_path / "cosign.pub"
    pub.write_text(keys["ed25519"].public_pem)
    added = run(server, "trust", "key", "add", PROJECT, "release", pub)
    assert added.returncode == 0 and "ed25519" in added.stdout, added.stderr
    try:
        listed = json.loads(run(server, "trust", "key", "list", PROJECT, "--json").stdout)
        assert [key["name"] for key in listed["keys"]] == ["release"]
        done = run(server, "trust", "verify", f"sig/app@{image.digest}", "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert (result["status"], result["key"]) == ("verified", "release")
        # The API reads the verdict the CLI stored.
        assert verdict(api, "sig/app", "cli")["cached"] is True
        bad = run(server, "trust", "key", "add", PROJECT, "junk", "-", stdin="junk")
        assert bad.returncode == 1 and "not a PEM public key" in bad.stderr
    finally:
        assert run(server, "trust", "key", "delete", PROJECT, "release").returncode == 0
    assert run(server, "trust", "key", "delete", PROJECT, "release").returncode == 1
    assert run(server, "trust", "verify", "sig/app:cli").returncode == 4


def test_cached_is_one_read_of_the_current_key_set(
    server: RunningServer,
    api: httpx.Client,
    oci: OCIClient,
    keys: dict[str, KeyPair],
    trusted: None,
    tmp_path: Path,
) -> None:
    """What a pull policy reads: the stored verdict while the key set is the one it was made with."""
    from dockyard.config.loader import load_settings
    from dockyard.services import build_services
    from dockyard.signatures.services import Signatures

    image = oci.push_image("sig/app", "hot", seed="hot-path")
    signed_with(oci, image.digest, keys["ecdsa"], payload(image.digest), tmp_path)
    services = build_services(settings=load_settings(server.config_path))
    try:
        signatures = Signatures(services.db, services.registry, services.blobs)
        assert signatures.cached("sig/app", image.digest) is None  # never verified
        assert verdict(api, "sig/app", "hot")["status"] == "verified"
        hit = signatures.cached("sig/app", image.digest)
        assert hit is not None and hit.verified and hit.key == "ecdsa" and hit.cached
        assert signatures.cached("sig/nosuch", image.digest) is None
        assert signatures.cached("sig/other", image.digest) is None  # not verified there
        assert api.delete(f"/projects/{PROJECT}/signing-keys/ed25519").status_code == 204
        assert signatures.cached("sig/app", image.digest) is None  # made with the old key set
    finally:
        services.close()
