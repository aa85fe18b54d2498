"""Pull policies against a real server (with its job runner): a project that requires signatures
refuses manifest GETs of unsigned artifacts with DENIED and a message naming the policy, serves them
once a signature that verifies is pushed (the push queues the verification: no manual step), judges a
platform manifest by the index that references it, and refuses again when the key goes. HEADs and
blob GETs are not checked; a project without the policy is not touched."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cosign import KeyPair, make_key, payload, push_referrer, push_sig_tag, signature_layer
from tests.support.ociclient import (
    OCI_INDEX,
    OCIClient,
    bearer_client,
    describe,
    index_manifest,
)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "pull-policies-Passw0rd")
NOT_SIGNED = "artifact is not signed by a trusted key (policy: require signature)"
NOT_VERIFIED = (
    "artifact's signature does not verify with the project's trusted keys (policy: require signature)"
)
REPOS = ("strict/app", "strict/multi", "open/app")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("pull-policies"),
        {"auth": {"enabled": True}, "http": {"workers": 2}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    with httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        for project in ("strict", "open"):
            assert api.post("/projects", json={"name": project}).status_code == 201
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    workdir = tmp_path_factory.mktemp("keys")
    return {
        "trusted": make_key("ecdsa", workdir, "trusted"),
        "stranger": make_key("ecdsa", workdir, "stranger"),
    }


@pytest.fixture(scope="module")
def api(server: RunningServer, keys: dict[str, KeyPair]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        answer = client.post(
            "/projects/strict/signing-keys",
            json={"name": "trusted", "public_key": keys["trusted"].public_pem},
        )
        assert answer.status_code == 201, describe(answer)
        answer = client.patch("/projects/strict", json={"require_signature": True})
        assert answer.status_code == 200, describe(answer)
        assert answer.json()["pull_policy"]["require_signature"] is True
        yield client


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with bearer_client(server.url, ADMIN, REPOS) as http:
        yield OCIClient(http)


def refusal(answer: httpx.Response) -> str:
    assert answer.status_code == 403, describe(answer)
    errors = answer.json()["errors"]
    assert [error["code"] for error in errors] == ["DENIED"], describe(answer)
    return str(errors[0]["message"])


def sign(oci: OCIClient, repo: str, digest: str, key: KeyPair, workdir: Path) -> None:
    body = payload(digest)
    push_sig_tag(oci, repo, digest, [signature_layer(oci, repo, body, key.sign(body, workdir))])


def eventually_pulled(oci: OCIClient, repo: str, reference: str, timeout: float = 30) -> httpx.Response:
    """The verification job runs after the push: poll until the GET is served."""
    deadline = time.monotonic() + timeout
    while True:
        answer = oci.get_manifest(repo, reference)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_unsigned_refused_then_served_once_signed(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    image = oci.push_image("strict/app", "v1", seed="policy-signed")
    assert refusal(oci.get_manifest("strict/app", "v1")) == NOT_SIGNED
    assert refusal(oci.get_manifest("strict/app", image.digest)) == NOT_SIGNED
    # HEAD is not checked (no body to carry the message); blobs are not either.
    assert oci.http.head("/v2/strict/app/manifests/v1").status_code == 200
    sign(oci, "strict/app", image.digest, keys["trusted"], tmp_path)
    served = eventually_pulled(oci, "strict/app", "v1")
    assert served.status_code == 200, describe(served)
    assert served.headers["docker-content-digest"] == image.digest


def test_a_stranger_signature_is_refused_with_its_own_message(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    image = oci.push_image("strict/app", "stranger", seed="policy-stranger")
    sign(oci, "strict/app", image.digest, keys["stranger"], tmp_path)
    deadline = time.monotonic() + 30
    while (message := refusal(oci.get_manifest("strict/app", "stranger"))) == NOT_SIGNED:
        assert time.monotonic() < deadline, "the verification job never ran"
        time.sleep(0.2)
    assert message == NOT_VERIFIED


def test_a_referrer_signature_counts_too(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    image = oci.push_image("strict/app", "referred", seed="policy-referrer")
    assert refusal(oci.get_manifest("strict/app", "referred")) == NOT_SIGNED
    body = payload(image.digest)
    push_referrer(
        oci,
        "strict/app",
        image,
        [signature_layer(oci, "strict/app", body, keys["trusted"].sign(body, tmp_path))],
    )
    assert eventually_pulled(oci, "strict/app", "referred").status_code == 200


def test_signatures_themselves_are_served_but_a_subject_does_not_free_an_image(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    """cosign and notation read signature manifests to verify, exactly in projects that require
    signatures: they are served. An image that names a subject is still an image: judged."""
    image = oci.push_image("strict/app", "sig-reads", seed="policy-sig-reads")
    body = payload(image.digest)
    stranger = keys["stranger"].sign(body, tmp_path)
    sign(oci, "strict/app", image.digest, keys["stranger"], tmp_path)
    tag = image.digest.replace(":", "-") + ".sig"
    served = oci.get_manifest("strict/app", tag)
    assert served.status_code == 200, describe(served)
    referrer = push_referrer(oci, "strict/app", image, [signature_layer(oci, "strict/app", body, stranger)])
    assert oci.get_manifest("strict/app", referrer.digest).status_code == 200
    disguised = oci.push_image("strict/app", seed="policy-disguised", subject=image.descriptor())
    assert refusal(oci.get_manifest("strict/app", disguised.digest)) == NOT_SIGNED
    assert (
        oci.get_manifest("strict/app", "sig-reads").status_code == 403
    )  # the image: not signed by a trusted key


def test_a_platform_manifest_is_judged_by_its_signed_index(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    amd = oci.push_image("strict/multi", seed="policy-amd64")
    arm = oci.push_image("strict/multi", seed="policy-arm64")
    body = index_manifest(
        [
            amd.descriptor(platform={"os": "linux", "architecture": "amd64"}),
            arm.descriptor(platform={"os": "linux", "architecture": "arm64"}),
        ]
    )
    index = oci.push_manifest("strict/multi", "v1", body, OCI_INDEX)
    assert refusal(oci.get_manifest("strict/multi", "v1")) == NOT_SIGNED
    assert refusal(oci.get_manifest("strict/multi", amd.digest)) == NOT_SIGNED
    sign(oci, "strict/multi", index.digest, keys["trusted"], tmp_path)
    assert eventually_pulled(oci, "strict/multi", "v1").status_code == 200
    for child in (amd, arm):
        answer = oci.get_manifest("strict/multi", child.digest)
        assert answer.status_code == 200, describe(answer)
    # A platform manifest of no signed index stays refused.
    lone = oci.push_image("strict/multi", "lone", seed="policy-lone")
    assert refusal(oci.get_manifest("strict/multi", lone.digest)) == NOT_SIGNED


def test_removing_the_key_refuses_again_and_adding_it_serves_again(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    image = oci.push_image("strict/app", "rotate", seed="policy-rotate")
    sign(oci, "strict/app", image.digest, keys["trusted"], tmp_path)
    assert eventually_pulled(oci, "strict/app", "rotate").status_code == 200
    assert api.delete("/projects/strict/signing-keys/trusted").status_code == 204
    try:
        # No verdict for the new key set yet: unsigned until verified again, on every worker.
        for _ in range(4):
            assert refusal(oci.get_manifest("strict/app", "rotate")) == NOT_SIGNED
    finally:
        answer = api.post(
            "/projects/strict/signing-keys",
            json={"name": "trusted", "public_key": keys["trusted"].public_pem},
        )
        assert answer.status_code == 201, describe(answer)
    # Adding the key queued the verification of the project's artifacts: served again, no manual step.
    assert eventually_pulled(oci, "strict/app", "rotate").status_code == 200
    for _ in range(4):
        assert oci.get_manifest("strict/app", "rotate").status_code == 200


def test_turning_the_policy_on_verifies_what_was_pushed_before(
    api: httpx.Client, oci: OCIClient, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    assert api.post("/projects", json={"name": "later"}).status_code == 201
    answer = api.post(
        "/projects/later/signing-keys", json={"name": "trusted", "public_key": keys["trusted"].public_pem}
    )
    assert answer.status_code == 201, describe(answer)
    with bearer_client(oci.http.base_url.__str__().rstrip("/"), ADMIN, ("later/app",)) as http:
        later = OCIClient(http)
        signed = later.push_image("later/app", "signed", seed="policy-later-signed")
        sign(later, "later/app", signed.digest, keys["trusted"], tmp_path)
        later.push_image("later/app", "unsigned", seed="policy-later-unsigned")
        assert api.patch("/projects/later", json={"require_signature": True}).status_code == 200
        # No verdict existed (no policy, no job): the switch queued the project's verification.
        assert eventually_pulled(later, "later/app", "signed").status_code == 200
        assert refusal(later.get_manifest("later/app", "unsigned")) == NOT_SIGNED


def test_turning_the_policy_off_serves_and_other_projects_are_untouched(
    api: httpx.Client, oci: OCIClient
) -> None:
    oci.push_image("open/app", "v1", seed="policy-open")
    assert oci.get_manifest("open/app", "v1").status_code == 200
    oci.push_image("strict/app", "off", seed="policy-off")
    assert refusal(oci.get_manifest("strict/app", "off")) == NOT_SIGNED
    assert api.patch("/projects/strict", json={"require_signature": False}).status_code == 200
    try:
        for _ in range(4):  # both workers
            assert oci.get_manifest("strict/app", "off").status_code == 200
    finally:
        assert api.patch("/projects/strict", json={"require_signature": True}).status_code == 200
    assert refusal(oci.get_manifest("strict/app", "off")) == NOT_SIGNED
    assert api.get("/projects/strict").json()["pull_policy"]["require_signature"] is True


def test_only_project_admins_change_the_policy(api: httpx.Client, server: RunningServer) -> None:
    password = "Developer-Passw0rd1"
    assert api.post("/users", json={"username": "dev", "password": password}).status_code == 201
    assert api.post("/projects/strict/members", json={"user": "dev", "role": "developer"}).status_code == 201
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=("dev", password), timeout=HTTP_TIMEOUT) as dev:
        answer = dev.patch("/projects/strict", json={"require_signature": False})
        assert answer.status_code == 403, describe(answer)
    assert api.get("/projects/strict").json()["pull_policy"]["require_signature"] is True
