"""External scanner registrations (scans.scanners): the secret sealed at rest and opened into the
Authorization header a scan sends, the default scanner, the checks on names, URLs and credentials. Run on
SQLite and PostgreSQL (the `database` fixture)."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from dockyard.db.session import Database
from dockyard.endpoints.secrets import SecretBox
from dockyard.scans.adapters import _refresh_after
from dockyard.scans.models import ScannerRow
from dockyard.scans.scanners import BUILT_IN, ScannerExists, ScannerInvalid, ScannerNotFound, Scanners
from dockyard.upstream.addresses import AddressGuard

SECRET = "adapter-bearer-token-1"


@pytest.fixture
def scanners(database: Database) -> Scanners:
    return Scanners(database, SecretBox(b"passphrase"), AddressGuard(["127.0.0.0/8"]))


def test_the_secret_is_sealed_at_rest_and_opened_into_the_header(
    scanners: Scanners, database: Database
) -> None:
    created = scanners.create("trivy", "http://127.0.0.1:8080/", auth="token", secret=SECRET)
    assert (created.url, created.auth, created.has_secret, created.is_default) == (
        "http://127.0.0.1:8080", "token", True, False,
    )  # fmt: skip
    with database.read() as conn:
        stored = conn.execute(select(ScannerRow.sealed_secret)).scalar_one()
    assert SECRET not in stored and stored.startswith("v1:")
    assert scanners.config("trivy").authorization == f"Bearer {SECRET}"
    scanners.create("basic", "http://127.0.0.1:8081", auth="basic", username="harbor", secret="pw")
    header = scanners.config("basic").authorization or ""
    assert base64.b64decode(header.removeprefix("Basic ")) == b"harbor:pw"
    # Another passphrase cannot open it: a clear error, not a scan without credentials.
    with pytest.raises(ScannerInvalid, match="cannot be opened"):
        Scanners(database, SecretBox(b"another"), AddressGuard()).config("trivy")


def test_one_default_at_most_and_built_in_without_one(scanners: Scanners) -> None:
    assert scanners.default_name() == BUILT_IN
    scanners.create("a", "http://127.0.0.1:1", default=True)
    scanners.create("b", "http://127.0.0.1:2")
    assert scanners.default_name() == "a"
    scanners.set_default("b")
    assert scanners.default_name() == "b" and [s.is_default for s in scanners.list()] == [False, True]
    scanners.set_default(BUILT_IN)
    assert scanners.default_name() == BUILT_IN
    scanners.set_default("a")
    scanners.delete("a")
    assert scanners.default_name() == BUILT_IN  # the default's deletion goes back to the built-in one
    with pytest.raises(ScannerNotFound):
        scanners.set_default("a")


@pytest.mark.parametrize(
    ("name", "url", "extra"),
    [
        ("built-in", "http://127.0.0.1:1", {}),
        ("Bad Name", "http://127.0.0.1:1", {}),
        ("x", "ftp://127.0.0.1/", {}),
        ("x", "http://user:pw@127.0.0.1/", {}),
        ("x", "http://169.254.169.254/", {}),  # the metadata service: the address guard refuses it
        ("x", "http://10.1.2.3/", {}),
        ("x", "http://127.0.0.1:1", {"auth": "token"}),  # no secret
        ("x", "http://127.0.0.1:1", {"auth": "basic", "secret": "s"}),  # no username
        ("x", "http://127.0.0.1:1", {"auth": "token", "secret": "a\nb"}),
        ("x", "http://127.0.0.1:1", {"scan_timeout": 1}),
        ("x", "http://127.0.0.1:1", {"registry_url": "file:///etc"}),
    ],
)
def test_bad_registrations_are_refused(
    scanners: Scanners, name: str, url: str, extra: dict[str, object]
) -> None:
    with pytest.raises(ScannerInvalid):
        scanners.create(name, url, **extra)  # type: ignore[arg-type]
    assert scanners.list() == []


def test_names_are_unique(scanners: Scanners) -> None:
    scanners.create("a", "http://127.0.0.1:1")
    with pytest.raises(ScannerExists):
        scanners.create("a", "http://127.0.0.1:2")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, 1.0), ("3", 3.0), ("0", 0.5), ("x", 1.0), ("9999", 60.0), ("nan", 1.0), ("2.5", 2.5)],
)
def test_refresh_after_is_bounded(header: str | None, seconds: float) -> None:
    assert _refresh_after(header) == seconds
