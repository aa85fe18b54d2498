"""Sigstore keyless signatures against a real server (with its job runner): a private Sigstore made in
the test (a test CA as Fulcio, a CT log key signing the leaves' SCTs, a Rekor key signing the SETs and
checkpoints: tests/support/sigstore.py) whose `trusted_root.json` the operator imports, and bundles
pushed as cosign `--new-bundle-format` pushes them (an OCI referrer with artifactType
application/vnd.dev.sigstore.bundle.v0.3+json, the bundle as its layer). A project that requires
signatures serves an image once a bundle by a trusted identity verifies, and refuses one whose bundle
is bound to another digest, signed by another identity, or whose trust root was removed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ociclient import (
    OCI_MANIFEST,
    OCIClient,
    PushedManifest,
    bearer_client,
    describe,
    descriptor,
    digest_of,
    empty_descriptor,
    image_manifest,
)
from tests.support.server import RunningServer, start_server
from tests.support.sigstore import BUNDLE_TYPE, PrivateSigstore
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "sigstore-Passw0rd")
PROJECT = "keyless"
REPO = "keyless/app"
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ACTIONS = "https://token.actions.githubusercontent.com"
NOT_SIGNED = "artifact is not signed by a trusted key (policy: require signature)"
NOT_VERIFIED = (
    "artifact's signature does not verify with the project's trusted keys (policy: require signature)"
)


@pytest.fixture(scope="module")
def sigstore() -> PrivateSigstore:
    return PrivateSigstore()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("sigstore"),
        # The verification jobs are queued by the HTTP workers and run by serve's job worker, which
        # hears of them on the node's change feed: at once, with the default poll.
        {"auth": {"enabled": True}, "http": {"workers": 2}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer, sigstore: PrivateSigstore) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        assert client.post("/projects", json={"name": PROJECT}).status_code == 201
        put_root(client, f"/projects/{PROJECT}/sigstore/trust-roots/private", sigstore)
        identity = {"name": "release", "issuer": ACTIONS, "san": WORKFLOW}
        answer = client.post(f"/projects/{PROJECT}/sigstore/identities", json=identity)
        assert answer.status_code == 201, describe(answer)
        assert answer.json() == {**identity, "san_regex": None}
        answer = client.patch(f"/projects/{PROJECT}", json={"require_signature": True})
        assert answer.status_code == 200, describe(answer)
        yield client


@pytest.fixture
def oci(server: RunningServer) -> Iterator[OCIClient]:
    with bearer_client(server.url, ADMIN, (REPO,)) as http:
        yield OCIClient(http)


def put_root(api: httpx.Client, path: str, sigstore: PrivateSigstore) -> dict[str, Any]:
    answer = api.put(path, content=sigstore.trusted_root(), headers={"content-type": "application/json"})
    assert answer.status_code == 200, describe(answer)
    return dict(answer.json())


def push_bundle(oci: OCIClient, subject: PushedManifest, bundle: bytes) -> PushedManifest:
    """As cosign --new-bundle-format pushes it (sigstore/cosign specs/BUNDLE_SPEC.md)."""
    oci.push_blob(REPO, b"{}")
    oci.push_blob(REPO, bundle)
    body = image_manifest(
        empty_descriptor(),
        [descriptor(BUNDLE_TYPE, bundle)],
        artifact_type=BUNDLE_TYPE,
        subject=subject.descriptor(),
    )
    return oci.push_manifest(REPO, digest_of(body), body, OCI_MANIFEST)


def refusal(answer: httpx.Response) -> str:
    assert answer.status_code == 403, describe(answer)
    errors = answer.json()["errors"]
    assert [error["code"] for error in errors] == ["DENIED"], describe(answer)
    return str(errors[0]["message"])


def eventually(oci: OCIClient, reference: str, status: int, message: str | None = None) -> httpx.Response:
    """The verification job runs after the push: poll until the GET answers `status` (`message`)."""
    deadline = time.monotonic() + 30
    while True:
        answer = oci.get_manifest(REPO, reference)
        done = answer.status_code == status and (message is None or refusal(answer) == message)
        if done or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def verdict(api: httpx.Client, reference: str) -> dict[str, Any]:
    answer = api.get(f"/repositories/{REPO}/artifacts/{reference}/signature")
    assert answer.status_code == 200, describe(answer)
    return dict(answer.json())


def test_a_keyless_bundle_by_the_trusted_identity_frees_the_image(
    api: httpx.Client, oci: OCIClient, sigstore: PrivateSigstore
) -> None:
    image = oci.push_image(REPO, "v1", seed="keyless-v1")
    assert refusal(oci.get_manifest(REPO, "v1")) == NOT_SIGNED
    pushed = push_bundle(oci, image, sigstore.sign_image(image.digest))
    served = eventually(oci, "v1", 200)
    assert served.status_code == 200, describe(served)
    assert served.headers["docker-content-digest"] == image.digest
    judged = verdict(api, "v1")
    assert judged["status"] == "verified"
    assert judged["key"] == "release"
    assert judged["signature"] == pushed.digest
    assert f"signed keyless by {WORKFLOW} (issuer {ACTIONS}" in judged["reason"]
    assert "trust root 'private', project" in judged["reason"]


def test_a_bundle_bound_to_another_digest_never_counts(
    api: httpx.Client, oci: OCIClient, sigstore: PrivateSigstore
) -> None:
    image = oci.push_image(REPO, "other", seed="keyless-other")
    elsewhere = oci.push_image(REPO, "elsewhere", seed="keyless-elsewhere")
    push_bundle(oci, image, sigstore.sign_image(elsewhere.digest))
    assert refusal(eventually(oci, "other", 403, NOT_VERIFIED)) == NOT_VERIFIED
    assert "subjects do not include this artifact's digest" in verdict(api, "other")["reason"]


def test_a_bundle_by_another_identity_is_refused(
    api: httpx.Client, oci: OCIClient, sigstore: PrivateSigstore
) -> None:
    image = oci.push_image(REPO, "fork", seed="keyless-fork")
    fork = "https://github.com/mallory/app/.github/workflows/release.yml@refs/heads/main"
    push_bundle(oci, image, sigstore.sign_image(image.digest, san=fork))
    assert refusal(eventually(oci, "fork", 403, NOT_VERIFIED)) == NOT_VERIFIED
    assert f"no identity policy matches the signer (SAN {fork}" in verdict(api, "fork")["reason"]
    # A regex identity that admits the whole organisation's workflows frees it.
    regex = {"name": "org", "issuer": ACTIONS, "san_regex": r"https://github\.com/mallory/.*"}
    assert api.post(f"/projects/{PROJECT}/sigstore/identities", json=regex).status_code == 201
    try:
        assert eventually(oci, "fork", 200).status_code == 200
        assert verdict(api, "fork")["key"] == "org"
    finally:
        assert api.delete(f"/projects/{PROJECT}/sigstore/identities/org").status_code == 204
    assert refusal(eventually(oci, "fork", 403, NOT_VERIFIED)) == NOT_VERIFIED


def test_removing_the_trust_root_refuses_and_a_system_wide_one_serves_again(
    api: httpx.Client, oci: OCIClient, sigstore: PrivateSigstore
) -> None:
    image = oci.push_image(REPO, "rotate", seed="keyless-rotate")
    push_bundle(oci, image, sigstore.sign_image(image.digest))
    assert eventually(oci, "rotate", 200).status_code == 200
    assert api.delete(f"/projects/{PROJECT}/sigstore/trust-roots/private").status_code == 204
    try:
        assert refusal(eventually(oci, "rotate", 403, NOT_VERIFIED)) == NOT_VERIFIED
        assert (
            "neither the project nor the system has a Sigstore trust root" in verdict(api, "rotate")["reason"]
        )
        summary = put_root(api, "/sigstore/trust-roots/corp", sigstore)
        assert summary["scope"] == "system"
        assert [log["url"] for log in summary["tlogs"]] == ["https://rekor.test"]
        assert eventually(oci, "rotate", 200).status_code == 200
        assert "trust root 'corp', system" in verdict(api, "rotate")["reason"]
        assert [root["name"] for root in api.get("/sigstore/trust-roots").json()] == ["corp"]
        assert api.delete("/sigstore/trust-roots/corp").status_code == 204
        assert refusal(eventually(oci, "rotate", 403, NOT_VERIFIED)) == NOT_VERIFIED
    finally:
        put_root(api, f"/projects/{PROJECT}/sigstore/trust-roots/private", sigstore)
    assert eventually(oci, "rotate", 200).status_code == 200


def test_bad_trust_roots_and_identities_are_refused_in_the_api_error_format(api: httpx.Client) -> None:
    root = api.put(f"/projects/{PROJECT}/sigstore/trust-roots/bad", json={"mediaType": "nope"})
    assert root.status_code == 400, describe(root)
    assert "not a usable trusted_root.json: mediaType" in root.json()["errors"][0]["message"]
    both = {"name": "both", "issuer": ACTIONS, "san": WORKFLOW, "san_regex": ".*"}
    for body, message in [
        (both, "exactly one of san"),
        ({"name": "re", "issuer": ACTIONS, "san_regex": "("}, "not a regular expression"),
        ({"name": "release", "issuer": ACTIONS, "san": WORKFLOW}, "already has an identity"),
    ]:
        answer = api.post(f"/projects/{PROJECT}/sigstore/identities", json=body)
        assert answer.status_code == 400, describe(answer)
        assert message in answer.json()["errors"][0]["message"]
    missing = api.delete(f"/projects/{PROJECT}/sigstore/identities/nobody")
    assert missing.status_code == 404, describe(missing)


# The CLI opens the database itself but runs the same service as the API's routes, whose database work
# runs on PostgreSQL in this module's API tests: the SQLite pass alone runs it (tests/conftest.py).
@pytest.mark.db_independent
def test_the_cli_imports_roots_and_manages_identities(
    server: RunningServer, api: httpx.Client, sigstore: PrivateSigstore, tmp_path: Path
) -> None:
    from tests.integration.test_signatures import run

    path = tmp_path / "trusted_root.json"
    path.write_bytes(sigstore.trusted_root())
    added = run(server, "trust", "sigstore", "root", "add", "cli-root", path, "--project", PROJECT)
    assert added.returncode == 0, added.stderr
    assert "1 CAs, 1 transparency logs, 1 CT logs" in added.stdout
    listed = json.loads(run(server, "trust", "sigstore", "root", "list", "-p", PROJECT, "--json").stdout)
    assert sorted(root["name"] for root in listed) == ["cli-root", "private"]
    neither = run(server, "trust", "sigstore", "root", "list")
    assert neither.returncode == 2 and "--system" in neither.stderr
    assert run(server, "trust", "sigstore", "root", "delete", "cli-root", "-p", PROJECT).returncode == 0
    system = run(server, "trust", "sigstore", "root", "add", "cli-sys", path, "--system")
    assert system.returncode == 0, system.stderr
    assert [r["name"] for r in api.get("/sigstore/trust-roots").json()] == ["cli-sys"]
    assert run(server, "trust", "sigstore", "root", "delete", "cli-sys", "--system").returncode == 0

    args = ["trust", "sigstore", "identity", "add", PROJECT, "cli-id", "--issuer", ACTIONS]
    assert run(server, *args, "--san-regex", "https://github.com/acme/.*").returncode == 0
    shown = run(server, "trust", "sigstore", "identity", "list", PROJECT)
    assert "cli-id  SAN ~ https://github.com/acme/.*  issuer " + ACTIONS in shown.stdout, shown
    refused = run(server, *args, "--san", WORKFLOW)
    assert refused.returncode == 1 and "already has an identity" in refused.stderr, refused
    assert run(server, "trust", "sigstore", "identity", "delete", PROJECT, "cli-id").returncode == 0
    names = [i["name"] for i in api.get(f"/projects/{PROJECT}/sigstore/identities").json()]
    assert names == ["release"]
