"""A verdict stored in one repository (a signature checked, a scan result stored or recounted) drops
that repository's pull-gate decisions and no other's: in a project that requires signatures, a pull
from repository B after a verdict was stored in repository A is answered from B's cached decision,
without reading the database, while A's is decided again. A trusted key changed still drops every
repository's. The whole app in-process (as `serve` builds it: Services.verdicts_changed, the keyed
change feed), on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from dockyard.app import build_services, create_app
from dockyard.scans.services import Scans
from dockyard.services import Services
from dockyard.signatures.keys import TrustedKeys
from dockyard.signatures.services import Signatures
from tests.support.inprocess import BASE_URL, in_process_settings
from tests.support.ociclient import OCIClient

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

NOT_SIGNED = "artifact is not signed by a trusted key (policy: require signature)"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Services, OCIClient, dict[str, str]]]:
    settings = in_process_settings(tmp_path, {"auth": {"enabled": False}})
    services = build_services(settings)
    with TestClient(create_app(services), base_url=BASE_URL) as http:
        oci = OCIClient(http)
        digests = {name: oci.push_image(name, "v1", seed=name).digest for name in ("strict/a", "strict/b")}
        assert services.pull_gate is not None
        services.pull_gate.policies.set("strict", require_signature=True)
        yield services, oci, digests


@contextmanager
def statements(services: Services) -> Iterator[list[str]]:
    """The statements the app's engine and its point reads send meanwhile (not BEGIN/COMMIT)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT")):
            sent.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)


def refused(oci: OCIClient, repository: str) -> str:
    answer = oci.get_manifest(repository, "v1")
    assert answer.status_code == 403, answer.text
    return str(answer.json()["errors"][0]["message"])


def verdict_reads(sent: list[str]) -> list[str]:
    return [s for s in sent if "signature_verdicts" in s]


def test_a_verdict_in_one_repository_keeps_anothers_decision(
    app: tuple[Services, OCIClient, dict[str, str]],
) -> None:
    services, oci, digests = app
    for repository in ("strict/a", "strict/b"):
        assert refused(oci, repository) == NOT_SIGNED  # decided, and kept
    with statements(services) as sent:
        assert refused(oci, "strict/b") == NOT_SIGNED
    assert verdict_reads(sent) == []  # the cached decision

    # The verification job's work, wired as `serve` wires it: stores an `unsigned` verdict in A.
    signatures = Signatures(services.db, services.registry, services.blobs, services.verdicts_changed)
    assert signatures.verify("strict/a", "v1").status == "unsigned"
    with statements(services) as sent:
        assert refused(oci, "strict/b") == NOT_SIGNED
    assert verdict_reads(sent) == []  # B's decision stayed
    with statements(services) as sent:
        assert refused(oci, "strict/a") == NOT_SIGNED
    assert verdict_reads(sent) != []  # A's was made again

    # A scan result recounted in A (an allowlist change) drops A's decisions only, too.
    scans = Scans(services.db, services.registry, services.blobs, on_change=services.verdicts_changed)
    scans.recount("strict/a", digests["strict/a"])
    with statements(services) as sent:
        assert refused(oci, "strict/b") == NOT_SIGNED
    assert verdict_reads(sent) == []


def test_a_trusted_key_changed_drops_every_repositorys_decision(
    app: tuple[Services, OCIClient, dict[str, str]],
) -> None:
    services, oci, _ = app
    for repository in ("strict/a", "strict/b"):
        assert refused(oci, repository) == NOT_SIGNED
    keys = TrustedKeys(services.db, services.verdicts_changed)
    keys.add("strict", "someone", _public_key(), "admin")
    for repository in ("strict/a", "strict/b"):
        with statements(services) as sent:
            assert refused(oci, repository) == NOT_SIGNED
        assert verdict_reads(sent) != [], repository


def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()
