"""`dockyard doctor`'s checks, each on real parts: a migrated SQLite and PostgreSQL database, a
filesystem storage in a temporary directory, certificates made with `cryptography`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import insert, text

from dockyard.auth.keystore import seal
from dockyard.auth.models import SigningKey
from dockyard.config.settings import Settings
from dockyard.db.engine import build_engine
from dockyard.db.session import Database
from dockyard.jobs.models import JobRow
from dockyard.maintenance.doctor import (
    Finding,
    Installation,
    check_clock,
    check_database,
    check_free_space,
    check_gc,
    check_quotas,
    check_signing_keys,
    check_storage,
    check_tls,
    check_uploads,
    failed,
    run_checks,
    space_verdict,
)
from dockyard.projects.models import ProjectRow
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.models import Upload
from tests.support.tmpfs import small_filesystem

pytestmark = pytest.mark.db_independent  # the `database` fixture runs each test on both databases

NOW = dt.datetime.now(dt.UTC)


def _settings(tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "datadir": str(tmp_path / "data"),
            "database": {"url": database_url},
            "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
            **extra,
        }
    )


def _installation(tmp_path: Path, database: Database, **options: Any) -> Installation:
    settings = _settings(tmp_path, str(database.engine.url.render_as_string(hide_password=False)))
    driver = FilesystemDriver(settings.storage_root)
    return Installation(settings=settings, engine=database.engine, driver=driver, **options)


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.check: finding for finding in findings}


# --- a healthy installation ---------------------------------------------------------------------


def test_a_healthy_installation_passes_every_check(tmp_path: Path, database: Database) -> None:
    findings = _by_check(run_checks(_installation(tmp_path, database)))

    assert findings["database"].verdict == "OK", findings["database"]
    assert "schema is current" in findings["database"].summary
    assert findings["storage"].verdict == "OK"
    assert findings["clock"].verdict == "OK"
    assert findings["uploads"].summary == "no upload sessions are open."
    assert findings["quotas"].verdict == "OK"
    assert findings["signing keys"].summary == "no token signing key yet: the first token request makes one."
    # Fresh: GC has not run. A warning, not a failure.
    assert findings["gc"].verdict == "WARN" and "never run" in findings["gc"].summary
    assert not failed(list(findings.values()))


# --- database -----------------------------------------------------------------------------------


def test_a_database_at_an_older_revision_fails_and_says_to_upgrade(
    tmp_path: Path, database: Database
) -> None:
    with database.write() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001_baseline'"))

    finding = check_database(_installation(tmp_path, database))

    assert finding.verdict == "FAIL"
    assert "older revision (0001_baseline)" in finding.summary
    assert "dockyard db upgrade" in finding.action


def test_a_database_a_newer_dockyard_migrated_fails(tmp_path: Path, database: Database) -> None:
    with database.write() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))

    installation = _installation(tmp_path, database)
    finding = check_database(installation)

    assert finding.verdict == "FAIL"
    assert "does not know" in finding.summary and "0099_from_the_future" in finding.summary
    # What reads the schema is not run on a schema this version does not know.
    assert _by_check(run_checks(installation))["clock"].verdict == "SKIP"


def test_a_missing_sqlite_file_fails_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.db"
    engine = build_engine(f"sqlite:///{path}")
    settings = _settings(tmp_path, f"sqlite:///{path}")
    try:
        finding = check_database(Installation(settings=settings, engine=engine, driver=None))
    finally:
        engine.dispose()

    assert finding.verdict == "FAIL" and "no database file" in finding.summary
    assert not path.exists()


def test_a_database_that_does_not_answer_fails(tmp_path: Path) -> None:
    # A port nothing listens on (connect_timeout keeps the attempt short).
    url = "postgresql+psycopg://dockyard:secret@127.0.0.1:9/dockyard?connect_timeout=2"
    engine = build_engine(url)
    try:
        finding = check_database(Installation(settings=_settings(tmp_path, url), engine=engine, driver=None))
    finally:
        engine.dispose()

    assert finding.verdict == "FAIL" and "does not answer" in finding.summary
    assert "secret" not in finding.summary


# --- storage ------------------------------------------------------------------------------------


def test_storage_on_a_read_only_filesystem_fails(tmp_path: Path, database: Database) -> None:
    # A real read-only mount (what a volume remounted read-only after disk errors looks like): no
    # user, root included, can write to it.
    with small_filesystem(tmp_path / "storage", "4m", "ro"):
        finding = check_storage(_installation(tmp_path, database))

    assert finding.verdict == "FAIL"
    assert "is not writable" in finding.summary and "Read-only file system" in finding.summary
    assert "write access" in finding.action


def test_a_small_disk_fails_the_free_space_check(tmp_path: Path, database: Database) -> None:
    with small_filesystem(tmp_path / "storage", "24m"):
        finding = check_free_space(_installation(tmp_path, database))

    assert finding.verdict == "FAIL"  # under 1 GiB free
    assert "free of 24.0 MiB" in finding.summary and "dockyard garbage-collect" in finding.action


def test_the_storage_probe_leaves_nothing_behind(tmp_path: Path, database: Database) -> None:
    installation = _installation(tmp_path, database)

    assert check_storage(installation).verdict == "OK"
    assert not list((tmp_path / "storage").rglob("probe-*"))


@pytest.mark.parametrize(
    ("free", "total", "verdict"),
    [
        (500 << 30, 1000 << 30, "OK"),
        (50 << 30, 1000 << 30, "WARN"),  # 5%
        (10 << 30, 1000 << 30, "FAIL"),  # 1%
        (512 << 20, 2 << 30, "FAIL"),  # 25% but under 1 GiB
    ],
)
def test_free_space_verdicts(free: int, total: int, verdict: str) -> None:
    assert space_verdict(free, total) == verdict


# --- clock --------------------------------------------------------------------------------------


def _clock_off_by(seconds: float) -> Callable[[], dt.datetime]:
    return lambda: dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


def test_clock_skew_against_the_database(tmp_path: Path, database: Database) -> None:
    assert check_clock(_installation(tmp_path, database)).verdict == "OK"

    # This node's clock a few seconds behind: the database's is ahead.
    warned = check_clock(_installation(tmp_path, database, now=_clock_off_by(5)))
    assert warned.verdict == "WARN" and "ahead of this node's" in warned.summary

    failing = check_clock(_installation(tmp_path, database, now=_clock_off_by(-120)))
    assert failing.verdict == "FAIL" and "behind this node's" in failing.summary
    assert "NTP" in failing.action


# --- signing keys -------------------------------------------------------------------------------


def test_signing_keys_sealed_under_another_secret_fail(tmp_path: Path, database: Database) -> None:
    pem = seal(ec.generate_private_key(ec.SECP256R1()), b"the-old-secret")
    with database.write() as connection:
        connection.execute(
            insert(SigningKey).values(kid="KID1", private_key=pem, public_key="", created_at=NOW)
        )

    opened = check_signing_keys(_installation(tmp_path, database, key_passphrases=[b"the-old-secret"]))
    sealed = check_signing_keys(_installation(tmp_path, database, key_passphrases=[b"a-new-secret", None]))

    assert opened.verdict == "OK"
    assert sealed.verdict == "FAIL" and "cannot be opened" in sealed.summary
    assert "http.secret" in sealed.action


# --- TLS ----------------------------------------------------------------------------------------


def _certificate(tmp_path: Path, names: list[str], days: float) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _tls_settings(tmp_path: Path, cert: Path, key: Path, host: str | None) -> Settings:
    http: dict[str, Any] = {"tls": {"certificate": str(cert), "key": str(key)}}
    if host:
        http["host"] = host
    return _settings(tmp_path, "sqlite:///unused.db", http=http)


def test_a_valid_certificate_naming_the_host_passes(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["registry.example.com"], days=90)

    finding = check_tls(_tls_settings(tmp_path, cert, key, "https://registry.example.com"), NOW)

    assert finding.verdict == "OK" and "names registry.example.com" in finding.summary


def test_a_wildcard_certificate_names_one_label(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["*.example.com"], days=90)

    assert check_tls(_tls_settings(tmp_path, cert, key, "https://registry.example.com"), NOW).verdict == "OK"
    deeper = check_tls(_tls_settings(tmp_path, cert, key, "https://a.registry.example.com"), NOW)
    assert deeper.verdict == "FAIL"


def test_a_certificate_expiring_within_14_days_fails(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["registry.example.com"], days=10)

    finding = check_tls(_tls_settings(tmp_path, cert, key, "https://registry.example.com"), NOW)

    assert finding.verdict == "FAIL"
    assert "expires in 9 days" in finding.summary or "expires in 10 days" in finding.summary
    assert "renew" in finding.action


def test_a_certificate_expiring_within_30_days_warns(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["registry.example.com"], days=20)

    assert check_tls(_tls_settings(tmp_path, cert, key, None), NOW).verdict == "WARN"


def test_an_expired_certificate_fails(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["registry.example.com"], days=10)

    later = NOW + dt.timedelta(days=11)
    finding = check_tls(_tls_settings(tmp_path, cert, key, "https://registry.example.com"), later)

    assert finding.verdict == "FAIL" and "expired" in finding.summary


def test_a_certificate_for_other_names_than_http_host_fails(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, ["old.example.com", "localhost"], days=90)

    finding = check_tls(_tls_settings(tmp_path, cert, key, "https://registry.example.com:5000"), NOW)

    assert finding.verdict == "FAIL"
    assert "old.example.com, localhost, not registry.example.com" in finding.summary
    assert "registry.example.com" in finding.action


def test_a_key_that_is_not_the_certificates_fails(tmp_path: Path) -> None:
    cert, _ = _certificate(tmp_path / "one", ["registry.example.com"], days=90)
    _, other_key = _certificate(tmp_path / "other", ["registry.example.com"], days=90)

    finding = check_tls(_tls_settings(tmp_path, cert, other_key, None), NOW)

    assert finding.verdict == "FAIL" and "does not belong" in finding.summary


# --- uploads, GC, quotas ------------------------------------------------------------------------


def test_upload_sessions_past_the_purge_age_warn(tmp_path: Path, database: Database) -> None:
    old = NOW - dt.timedelta(days=3)  # the purge age is 24h: twice that and more
    with database.write() as connection:
        for index, (touched, size) in enumerate([(NOW, 1000), (old, 3 << 20)]):
            connection.execute(
                insert(Upload).values(
                    id=f"{index:032x}",
                    repository="team/app",
                    project="team",
                    size=size,
                    created_at=touched,
                    updated_at=touched,
                )
            )

    finding = check_uploads(_installation(tmp_path, database))

    assert finding.verdict == "WARN"
    assert finding.summary.startswith("2 upload session(s) open, holding 3.0 MiB")
    assert "3 days" in finding.summary and "purge-uploads" in finding.action


def _gc_job(database: Database, status: str, finished: dt.datetime | None, error: str | None = None) -> None:
    with database.write() as connection:
        connection.execute(
            insert(JobRow).values(
                kind="gc",
                params={},
                status=status,
                attempts=1,
                max_attempts=1,
                run_after=NOW,
                created_at=finished or NOW,
                finished_at=finished,
                error=error,
            )
        )


def test_the_last_gc_run(tmp_path: Path, database: Database) -> None:
    _gc_job(database, "succeeded", NOW - dt.timedelta(days=40))
    stale = check_gc(_installation(tmp_path, database))
    assert stale.verdict == "WARN" and "succeeded 40 days ago" in stale.summary

    _gc_job(database, "failed", NOW - dt.timedelta(hours=1), error="storage unreachable")
    broken = check_gc(_installation(tmp_path, database))
    assert broken.verdict == "WARN" and "failed: storage unreachable" in broken.summary

    _gc_job(database, "succeeded", NOW - dt.timedelta(minutes=5))
    assert check_gc(_installation(tmp_path, database)).verdict == "OK"


def test_projects_at_or_near_their_quota_warn(tmp_path: Path, database: Database) -> None:
    with database.write() as connection:
        for name, used, limit in [("roomy", 10, 100), ("near", 85, 100), ("full", 100, 100)]:
            connection.execute(
                insert(ProjectRow).values(
                    name=name,
                    quota_used_bytes=used,
                    quota_limit_bytes=limit,
                    quota_warn_percent=80,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )

    finding = check_quotas(_installation(tmp_path, database))

    assert finding.verdict == "WARN"
    assert finding.summary == "1 project(s) are at their quota, pushes to them are refused: full."
