"""Sigstore bundles verified offline: real bundles of Sigstore's staging instance against its real
trusted root (tests/data/sigstore, from sigstore-python), and bundles of a private Sigstore made in
the test (tests/support/sigstore.py) for what the real ones cannot show (DSSE statements, a bundle for
another image, a CA whose window ended)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.signatures.sigstore_bundle import BundleProblem, Identity, verify_bundle
from dockyard.signatures.sigstore_root import InvalidRoot, parse_trust_root
from tests.support.sigstore import PrivateSigstore

VECTORS = Path(__file__).parents[2] / "data" / "sigstore"
GITHUB = "https://github.com/login/oauth"
STAGING_ROOT = (VECTORS / "staging_trusted_root.json").read_bytes()
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ACTIONS = "https://token.actions.githubusercontent.com"


def digest_of(name: str) -> str:
    return "sha256:" + hashlib.sha256((VECTORS / name).read_bytes()).hexdigest()


def bundle(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.sigstore").read_bytes())


def verify(
    document: dict[str, Any] | bytes, digest: str, root: bytes = STAGING_ROOT, *identities: Identity
) -> Any:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    chosen = identities or (Identity("william", GITHUB, san="william@yossarian.net"),)
    return verify_bundle(raw, digest, parse_trust_root(root), chosen)


def root_with(**changes: Any) -> bytes:
    root = json.loads(STAGING_ROOT)
    root.update(changes)
    return json.dumps(root).encode()


# --- real bundles, real trust root ---------------------------------------------------------------
def test_a_real_v03_bundle_verifies_against_its_real_trust_root_offline() -> None:
    verified = verify(bundle("bundle_v3.txt"), digest_of("bundle_v3.txt"))
    assert verified.identity == "william"
    assert verified.san == "william@yossarian.net"
    assert verified.issuer == GITHUB
    assert verified.logged.time == datetime(2024, 4, 2, 19, 19, 9, tzinfo=UTC)
    assert verified.logged.log_url == "https://rekor.sigstage.dev"
    assert verified.logged.proof_checked


def test_a_real_v01_bundle_with_a_chain_and_a_p384_leaf_verifies() -> None:
    verified = verify(
        bundle("bundle.txt"),
        digest_of("bundle.txt"),
        STAGING_ROOT,
        Identity("tny", GITHUB, san_regex=r".*@tny\.town"),
    )
    assert verified.san == "a@tny.town"


def test_a_bundle_does_not_verify_for_other_content() -> None:
    with pytest.raises(BundleProblem, match="not this artifact"):
        verify(bundle("bundle_v3.txt"), digest_of("bundle.txt"))


def test_a_tampered_signature_is_refused() -> None:
    document = bundle("bundle_v3.txt")
    signature = bytearray(base64.b64decode(document["messageSignature"]["signature"]))
    signature[-3] ^= 1
    document["messageSignature"]["signature"] = base64.b64encode(bytes(signature)).decode()
    with pytest.raises(BundleProblem, match="does not verify"):
        verify(document, digest_of("bundle_v3.txt"))


def test_a_tampered_log_body_breaks_the_inclusion_promise() -> None:
    document = bundle("bundle_v3.txt")
    entry = document["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    body["spec"]["data"]["hash"]["value"] = "0" * 64
    entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(BundleProblem, match="inclusion promise"):
        verify(document, digest_of("bundle_v3.txt"))


def test_a_moved_integrated_time_breaks_the_inclusion_promise() -> None:
    document = bundle("bundle_v3.txt")
    entry = document["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 60)
    with pytest.raises(BundleProblem, match="inclusion promise"):
        verify(document, digest_of("bundle_v3.txt"))


def test_a_wrong_inclusion_proof_is_refused() -> None:
    document = bundle("bundle_v3.txt")
    proof = document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["hashes"][0] = base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(BundleProblem, match="root hash"):
        verify(document, digest_of("bundle_v3.txt"))


def test_a_wrong_san_or_a_wrong_issuer_is_refused() -> None:
    document, digest = bundle("bundle_v3.txt"), digest_of("bundle_v3.txt")
    with pytest.raises(BundleProblem, match=r"no identity policy matches.*william@yossarian\.net"):
        verify(document, digest, STAGING_ROOT, Identity("other", GITHUB, san="mallory@example.com"))
    with pytest.raises(BundleProblem, match="no identity policy matches"):
        verify(
            document,
            digest,
            STAGING_ROOT,
            Identity("google", "https://accounts.google.com", san="william@yossarian.net"),
        )
    with pytest.raises(BundleProblem, match="no identity policy matches"):  # a regex matches the whole SAN
        verify(document, digest, STAGING_ROOT, Identity("prefix", GITHUB, san_regex="william@yossarian"))
    assert (
        verify(
            document, digest, STAGING_ROOT, Identity("any", GITHUB, san_regex=r"[a-z]+@yossarian\.net")
        ).identity
        == "any"
    )


def test_a_trust_root_without_the_ca_is_refused() -> None:
    production_like = PrivateSigstore()
    other_ca = json.loads(production_like.trusted_root())["certificateAuthorities"]
    other_ca[0]["validFor"] = {"start": "2022-01-01T00:00:00Z"}  # a window covering the signing
    with pytest.raises(BundleProblem, match="does not chain"):
        verify(
            bundle("bundle_v3.txt"), digest_of("bundle_v3.txt"), root_with(certificateAuthorities=other_ca)
        )


def test_a_ca_whose_window_ended_before_the_signing_is_refused() -> None:
    root = json.loads(STAGING_ROOT)
    root["certificateAuthorities"][0]["validFor"]["end"] = "2023-01-01T00:00:00Z"
    with pytest.raises(BundleProblem, match="was not valid at 2024-04-02"):
        verify(bundle("bundle_v3.txt"), digest_of("bundle_v3.txt"), json.dumps(root).encode())


def test_a_set_from_another_log_is_refused() -> None:
    root = json.loads(STAGING_ROOT)
    other_key = json.loads(PrivateSigstore().trusted_root())["tlogs"][0]["publicKey"]
    root["tlogs"][0]["publicKey"] = {**other_key, "validFor": root["tlogs"][0]["publicKey"]["validFor"]}
    with pytest.raises(BundleProblem, match="inclusion promise"):  # same log id, another log's key
        verify(bundle("bundle_v3.txt"), digest_of("bundle_v3.txt"), json.dumps(root).encode())
    with pytest.raises(BundleProblem, match="is not in the trust root"):  # the log is not trusted at all
        verify(bundle("bundle_v3.txt"), digest_of("bundle_v3.txt"), root_with(tlogs=root["tlogs"][1:]))


def test_the_sct_is_required_and_must_come_from_a_trusted_ct_log() -> None:
    with pytest.raises(BundleProblem, match="SCT"):
        verify(bundle("bundle_v3.txt"), digest_of("bundle_v3.txt"), root_with(ctlogs=[]))


def test_a_bundle_without_a_log_entry_or_a_checkpoint_is_refused() -> None:
    document = bundle("bundle_v3.txt")
    del document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
    with pytest.raises(BundleProblem, match="no checkpoint"):
        verify(document, digest_of("bundle_v3.txt"))
    document["verificationMaterial"]["tlogEntries"] = []
    with pytest.raises(BundleProblem, match="exactly one transparency log entry"):
        verify(document, digest_of("bundle_v3.txt"))


def test_a_v03_bundle_needs_its_inclusion_proof_a_v01_one_does_not() -> None:
    document = bundle("bundle_v3.txt")
    del document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    with pytest.raises(BundleProblem, match="no inclusion proof"):
        verify(document, digest_of("bundle_v3.txt"))
    old = bundle("bundle.txt")
    del old["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    verified = verify(old, digest_of("bundle.txt"), STAGING_ROOT, Identity("tny", GITHUB, san="a@tny.town"))
    assert not verified.logged.proof_checked


def test_a_bundle_without_an_inclusion_promise_has_no_signing_time() -> None:
    document = bundle("bundle_v3.txt")
    del document["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    with pytest.raises(BundleProblem, match="signing time cannot be established"):
        verify(document, digest_of("bundle_v3.txt"))


def test_trust_roots_that_are_not_usable_are_refused() -> None:
    for document, message in [
        (b"[]", "not a JSON object"),
        (root_with(mediaType="application/json"), "mediaType"),
        (root_with(certificateAuthorities=[]), "no certificate authority"),
        (root_with(tlogs=[]), "no transparency log"),
        (
            root_with(tlogs=[{"publicKey": {"rawBytes": "AAAA"}, "logId": {"keyId": "AAAA"}}]),
            "DER public key",
        ),
    ]:
        with pytest.raises(InvalidRoot, match=message):
            parse_trust_root(document)


# --- a private Sigstore: cosign's DSSE statements for images -------------------------------------
@pytest.fixture(scope="module")
def sigstore() -> PrivateSigstore:
    return PrivateSigstore()


IMAGE = "sha256:" + "ab" * 32


def ci(**extra: Any) -> Identity:
    return Identity("release", ACTIONS, **({"san": WORKFLOW} | extra))


def test_cosigns_dsse_bundle_for_an_image_verifies(sigstore: PrivateSigstore) -> None:
    verified = verify(sigstore.sign_image(IMAGE), IMAGE, sigstore.trusted_root(), ci())
    assert (verified.identity, verified.san, verified.issuer) == ("release", WORKFLOW, ACTIONS)


def test_a_bundle_for_another_image_never_counts(sigstore: PrivateSigstore) -> None:
    with pytest.raises(BundleProblem, match="subjects do not include this artifact"):
        verify(sigstore.sign_image("sha256:" + "cd" * 32), IMAGE, sigstore.trusted_root(), ci())


def test_an_attestation_of_another_predicate_is_not_a_signature(sigstore: PrivateSigstore) -> None:
    provenance = sigstore.sign_image(IMAGE, predicate_type="https://slsa.dev/provenance/v1")
    with pytest.raises(BundleProblem, match="predicate type"):
        verify(provenance, IMAGE, sigstore.trusted_root(), ci())


def test_a_tampered_statement_is_refused(sigstore: PrivateSigstore) -> None:
    document = json.loads(sigstore.sign_image(IMAGE))
    statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "ef" * 32
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(BundleProblem, match="DSSE signature does not verify"):
        verify(document, "sha256:" + "ef" * 32, sigstore.trusted_root(), ci())


def test_a_set_signed_by_another_rekor_is_refused(sigstore: PrivateSigstore) -> None:
    forged = sigstore.sign_image(IMAGE, rekor_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(BundleProblem, match="inclusion promise"):
        verify(forged, IMAGE, sigstore.trusted_root(), ci())


def test_the_private_sigstores_ca_missing_or_expired_is_refused(sigstore: PrivateSigstore) -> None:
    document = sigstore.sign_image(IMAGE)
    with pytest.raises(BundleProblem, match="does not chain"):
        verify(document, IMAGE, sigstore.trusted_root(ca=False), ci())
    with pytest.raises(BundleProblem, match="was not valid"):
        verify(document, IMAGE, sigstore.trusted_root(ca_end=datetime.now(UTC) - timedelta(hours=1)), ci())
    with pytest.raises(BundleProblem, match="SCT"):
        verify(document, IMAGE, sigstore.trusted_root(ct=False), ci())


def test_the_issuer_must_match_exactly(sigstore: PrivateSigstore) -> None:
    document = sigstore.sign_image(IMAGE, issuer="https://token.actions.githubusercontent.com.evil")
    with pytest.raises(BundleProblem, match="no identity policy matches"):
        verify(document, IMAGE, sigstore.trusted_root(), ci())


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> Any:
    """Every path into the JSON document, for replacing what is there with a value of another type."""
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _mutations(inner, (*path, key))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from _mutations(inner, (*path, n))


def test_fields_of_the_wrong_type_are_refused_never_crash() -> None:
    original = bundle("bundle_v3.txt")
    root = parse_trust_root(STAGING_ROOT)
    william = [Identity("william", GITHUB, san="william@yossarian.net")]
    paths = [p for p in _mutations(original) if p]
    assert len(paths) > 30
    for path in paths:
        for replacement in (None, 7, "x", [], {}):
            document = json.loads(json.dumps(original))
            target = document
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = replacement
            with pytest.raises(BundleProblem):
                verify_bundle(json.dumps(document).encode(), digest_of("bundle_v3.txt"), root, william)
