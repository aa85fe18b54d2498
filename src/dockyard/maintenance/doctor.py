"""`dockyard doctor`: check a running installation and say what is wrong in plain words.

Each check reads the same config, database and storage `serve` uses and gives one Finding: a verdict
(OK, WARN, FAIL; SKIP when what it needs is not there), one sentence on what it found and, unless all
is well, one on what to do. The checks only look: nothing is migrated, created or repaired (the storage
probe writes one small object under `doctor/` and deletes it again).

The CLI (cli/doctor.py) builds the parts (engine, driver, a Redis ping) and renders the findings: the
rules live here, so they are tested without a terminal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select, text

from dockyard.config.settings import Settings
from dockyard.db.engine import sqlite_file
from dockyard.db.revision import database_revisions, head_revisions
from dockyard.storage.driver.base import StorageDriver

Verdict = Literal["OK", "WARN", "FAIL", "SKIP"]

CERT_FAIL_DAYS = 14  # a certificate this close to expiry fails the check: renew now
CERT_WARN_DAYS = 30
SKEW_WARN_SECONDS = 2.0  # token lifetimes, job leases and upload purging compare DB and node times
SKEW_FAIL_SECONDS = 30.0
SPACE_FAIL_BYTES = 1 << 30  # under 1 GiB free a single large layer can fill the disk
SPACE_FAIL_PERCENT = 2.0
SPACE_WARN_PERCENT = 10.0
GC_STALE_DAYS = 30
PROBE_ROOT = "doctor"


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    summary: str  # one plain sentence: what was found
    action: str = ""  # what to do about it (empty when nothing)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Installation:
    """The parts of one node the checks look at. `engine` None: the database could not be opened (the
    reason is in `database_error`). `now` is this node's clock (a parameter so skew can be tested)."""

    settings: Settings
    engine: Engine | None
    driver: StorageDriver | None
    database_error: str | None = None
    driver_error: str | None = None
    redis_ping: Callable[[], None] | None = None
    key_passphrases: Sequence[bytes | None] = (None,)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def failed(findings: Sequence[Finding]) -> bool:
    return any(f.verdict == "FAIL" for f in findings)


def run_checks(installation: Installation) -> list[Finding]:
    """Every installation check, in the order an operator reads them. Checks that need the database are
    skipped (SKIP) when it is not reachable or not at this version's schema."""
    findings = [check_database(installation)]
    database_usable = findings[0].verdict == "OK"
    findings += [check_storage(installation), check_free_space(installation)]
    findings.append(check_redis(installation))
    findings.append(check_tls(installation.settings, installation.now()))
    for name, check in DATABASE_CHECKS:
        if database_usable:
            findings.append(check(installation))
        else:
            findings.append(Finding(name, "SKIP", "not checked: the database check failed."))
    return findings


# --- database ---------------------------------------------------------------------------------------


def check_database(installation: Installation) -> Finding:
    engine = installation.engine
    if engine is None:
        return Finding(
            "database",
            "FAIL",
            f"the database could not be opened: {installation.database_error}.",
            "check database.url in the config and that the database server runs.",
        )
    path = sqlite_file(str(engine.url))
    if path is not None and not path.is_file():
        return Finding(
            "database",
            "FAIL",
            f"there is no database file at {path}.",
            "start `dockyard serve` once (it creates and migrates it), or fix database.url / datadir.",
        )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()
        revisions = database_revisions(engine)
    except Exception as exc:  # any failure to talk to it is the finding
        return Finding(
            "database",
            "FAIL",
            f"the database does not answer: {_first_line(exc)}.",
            "check database.url, the network and that the database server runs.",
        )
    heads = head_revisions()
    where = f"{engine.dialect.name} database"
    if revisions == heads:
        return Finding("database", "OK", f"the {where} answers and its schema is current ({_names(heads)}).")
    if not revisions:
        return Finding(
            "database",
            "FAIL",
            f"the {where} answers but has no dockyard schema.",
            "run `dockyard db upgrade` (or start `dockyard serve`, which migrates at start).",
        )
    unknown = revisions - _known_revisions()
    if unknown:
        return Finding(
            "database",
            "FAIL",
            f"the {where} is at revision {_names(revisions)}, which this dockyard does not know: "
            "a newer version migrated it.",
            "run the newer dockyard on every node (a schema is never migrated down).",
        )
    return Finding(
        "database",
        "FAIL",
        f"the {where} is at an older revision ({_names(revisions)}) than this dockyard needs "
        f"({_names(heads)}).",
        "run `dockyard db upgrade`, or restart `dockyard serve`, which migrates at start.",
    )


def _known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory  # only for a schema that is not current

    from dockyard.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(None))
    return frozenset(revision.revision for revision in script.walk_revisions())


def _names(revisions: frozenset[str] | set[str]) -> str:
    return "+".join(sorted(revisions)) or "none"


# --- storage ----------------------------------------------------------------------------------------


def check_storage(installation: Installation) -> Finding:
    """Write, read back and delete one small object: what a push and a pull need."""
    driver = installation.driver
    name = installation.settings.storage.driver_name
    if driver is None:
        return Finding(
            "storage",
            "FAIL",
            f"the {name} storage could not be set up: {installation.driver_error}.",
            "check the storage section of the config.",
        )
    path = f"{PROBE_ROOT}/probe-{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    where = _storage_place(installation.settings)
    try:
        driver.put_content(path, payload)
    except Exception as exc:
        return Finding(
            "storage",
            "FAIL",
            f"the {name} storage{where} is not writable: {_first_line(exc)}.",
            "give the user dockyard runs as write access (or check the bucket's credentials and policy).",
        )
    try:
        read = driver.get_content(path)
    except Exception as exc:
        return Finding(
            "storage",
            "FAIL",
            f"the {name} storage{where} took a write but could not read it back: {_first_line(exc)}.",
            "check read permissions on the storage.",
        )
    finally:
        _delete_quietly(driver, path)
    if read != payload:
        return Finding(
            "storage",
            "FAIL",
            f"the {name} storage{where} returned other bytes than were written.",
            "the storage is corrupting data: check the disk or object store before anything else.",
        )
    return Finding("storage", "OK", f"the {name} storage{where} is writable and readable.")


def _delete_quietly(driver: StorageDriver, path: str) -> None:
    # A leftover probe object is harmless; the verdict is about writing and reading.
    with contextlib.suppress(Exception):
        driver.delete(path)


def _storage_place(settings: Settings) -> str:
    if settings.storage.s3 is not None:
        return f" (bucket {settings.storage.s3.bucket})"
    if settings.storage.driver_name == "filesystem":
        return f" at {settings.storage_root}"
    return ""


def check_free_space(installation: Installation) -> Finding:
    settings = installation.settings
    if settings.storage.driver_name != "filesystem":
        return Finding("free space", "SKIP", "the blobs are not on a local disk.")
    places = {"storage": settings.storage_root}
    database = sqlite_file(settings.database_url)
    if database is not None:
        places["database"] = database.parent
    results = []
    for role, place in places.items():
        existing = _existing_ancestor(place)
        usage = shutil.disk_usage(existing)
        results.append((space_verdict(usage.free, usage.total), role, place, usage.free, usage.total))
    worst = max(results, key=lambda r: _SEVERITY[r[0]])
    verdict, role, place, free, total = worst
    percent = 100 * free / max(total, 1)
    summary = f"{human_size(free)} free of {human_size(total)} ({percent:.0f}%) for the {role} at {place}."
    if verdict == "OK":
        return Finding("free space", "OK", summary)
    return Finding(
        "free space",
        verdict,
        summary,
        "free space: run `dockyard garbage-collect`, set retention policies, or grow the disk.",
    )


def space_verdict(free: int, total: int) -> Verdict:
    percent = 100 * free / max(total, 1)
    if free < SPACE_FAIL_BYTES or percent < SPACE_FAIL_PERCENT:
        return "FAIL"
    return "WARN" if percent < SPACE_WARN_PERCENT else "OK"


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


_SEVERITY: dict[Verdict, int] = {"SKIP": 0, "OK": 1, "WARN": 2, "FAIL": 3}


def human_size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"  # unreachable


# --- Redis ------------------------------------------------------------------------------------------


def check_redis(installation: Installation) -> Finding:
    if not installation.settings.redis.url:
        return Finding(
            "redis", "OK", "Redis is not configured: fine on one node (several nodes need it, see ha.md)."
        )
    if installation.redis_ping is None:
        return Finding(
            "redis", "FAIL", "Redis is configured but no client could be made.", "check redis.url."
        )
    try:
        installation.redis_ping()
    except Exception as exc:
        return Finding(
            "redis",
            "WARN",
            f"Redis does not answer: {_first_line(exc)}; the registry serves on, uncached, and other "
            "nodes learn of revocations late.",
            "check redis.url and that Redis runs.",
        )
    return Finding("redis", "OK", "Redis answers.")


# --- TLS --------------------------------------------------------------------------------------------


def check_tls(settings: Settings, now: datetime) -> Finding:
    tls = settings.http.tls
    if tls.certificate is None or tls.key is None:
        return Finding(
            "tls",
            "OK",
            "dockyard serves plain HTTP (TLS is not configured: a proxy in front of it should end TLS).",
        )
    from cryptography import x509  # only where TLS is configured
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificates(tls.certificate.read_bytes())[0]
        key = serialization.load_pem_private_key(tls.key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        return Finding(
            "tls",
            "FAIL",
            f"the certificate or key could not be read: {_first_line(exc)}.",
            "point http.tls.certificate and http.tls.key at PEM files dockyard can read.",
        )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if key.public_key().public_bytes(pem, spki) != certificate.public_key().public_bytes(pem, spki):
        return Finding(
            "tls",
            "FAIL",
            f"the key {tls.key} does not belong to the certificate {tls.certificate}.",
            "configure the key the certificate was issued for.",
        )
    expiry = _expiry(certificate, now)
    if expiry is not None:
        return expiry
    return _names_match(certificate, settings.http.host, now)


def _expiry(certificate: object, now: datetime) -> Finding | None:
    not_after: datetime = certificate.not_valid_after_utc  # type: ignore[attr-defined]
    not_before: datetime = certificate.not_valid_before_utc  # type: ignore[attr-defined]
    left = not_after - now
    when = not_after.strftime("%Y-%m-%d %H:%M UTC")
    renew = "renew the certificate and restart dockyard (or reload its proxy)."
    if now < not_before:
        return Finding("tls", "FAIL", f"the certificate is not valid before {not_before:%Y-%m-%d}.", renew)
    if left <= timedelta(0):
        return Finding("tls", "FAIL", f"the certificate expired on {when}: clients refuse it.", renew)
    if left < timedelta(days=CERT_FAIL_DAYS):
        return Finding("tls", "FAIL", f"the certificate expires in {left.days} days ({when}).", renew)
    if left < timedelta(days=CERT_WARN_DAYS):
        return Finding("tls", "WARN", f"the certificate expires in {left.days} days ({when}).", renew)
    return None


def _names_match(certificate: object, host_url: str | None, now: datetime) -> Finding:
    from cryptography import x509

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value  # type: ignore[attr-defined]
        dns_names = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
        addresses = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns_names, addresses = [], []
    names = dns_names + addresses
    days = (certificate.not_valid_after_utc - now).days  # type: ignore[attr-defined]
    valid = f"valid for {days} more days"
    if not host_url:
        return Finding(
            "tls",
            "OK",
            f"the certificate is {valid}, for {', '.join(names) or 'no names'} "
            "(http.host is not set, so its names were not checked).",
        )
    host = (urlsplit(host_url).hostname or "").lower()
    if _matches(host, dns_names, addresses):
        return Finding("tls", "OK", f"the certificate is {valid} and names {host}.")
    return Finding(
        "tls",
        "FAIL",
        f"the certificate names {', '.join(names) or 'nothing'}, not {host} (http.host): clients "
        "refuse the connection.",
        f"issue a certificate with {host} among its subject alternative names, or fix http.host.",
    )


def _matches(host: str, dns_names: list[str], addresses: list[str]) -> bool:
    try:
        return str(ipaddress.ip_address(host)) in addresses
    except ValueError:
        pass
    for name in dns_names:
        if name == host:
            return True
        # A wildcard stands for exactly one leftmost label (RFC 6125).
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


# --- checks on the database's content -------------------------------------------------------------


def check_clock(installation: Installation) -> Finding:
    """The database's clock against this node's: expiry times written by one are read by the other."""
    engine = installation.engine
    assert engine is not None
    query = (
        "SELECT clock_timestamp()"
        if engine.dialect.name == "postgresql"
        else ("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
    )
    before = installation.now()
    with engine.connect() as connection:
        value = connection.execute(text(query)).scalar_one()
    after = installation.now()
    database_now = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if database_now.tzinfo is None:
        database_now = database_now.replace(tzinfo=UTC)
    local = before + (after - before) / 2
    skew = (database_now - local).total_seconds()
    ahead = "ahead of" if skew > 0 else "behind"
    summary = f"the database's clock is {abs(skew):.1f} s {ahead} this node's."
    action = "run NTP (chrony, systemd-timesyncd) on this node and on the database server."
    if abs(skew) > SKEW_FAIL_SECONDS:
        return Finding("clock", "FAIL", summary + " Tokens and leases expire early or late.", action)
    if abs(skew) > SKEW_WARN_SECONDS:
        return Finding("clock", "WARN", summary, action)
    return Finding("clock", "OK", summary)


def check_signing_keys(installation: Installation) -> Finding:
    from dockyard.auth.keystore import open_key  # cryptography: only here
    from dockyard.auth.models import SigningKey

    engine = installation.engine
    assert engine is not None
    with engine.connect() as connection:
        keys = connection.execute(
            select(SigningKey.kid, SigningKey.private_key).where(SigningKey.retired_at.is_(None))
        ).all()
    if not keys:
        return Finding("signing keys", "OK", "no token signing key yet: the first token request makes one.")
    sealed = [kid for kid, pem in keys if open_key(pem, installation.key_passphrases) is None]
    if sealed:
        return Finding(
            "signing keys",
            "FAIL",
            f"{len(sealed)} of {len(keys)} active signing keys cannot be opened with this node's secret "
            f"(first: {sealed[0][:12]}): tokens it issues or checks fail.",
            "set http.secret to the value the other nodes use (see auth.md, signing keys).",
        )
    return Finding(
        "signing keys", "OK", f"{len(keys)} active signing key(s), all open with this node's secret."
    )


def check_uploads(installation: Installation) -> Finding:
    from dockyard.storage.models import Upload

    engine = installation.engine
    assert engine is not None
    with engine.connect() as connection:
        count, size, oldest = connection.execute(
            select(func.count(), func.coalesce(func.sum(Upload.size), 0), func.min(Upload.updated_at))
        ).one()
    if not count:
        return Finding("uploads", "OK", "no upload sessions are open.")
    purging = installation.settings.storage.maintenance.uploadpurging
    summary = f"{count} upload session(s) open, holding {human_size(int(size))}"
    idle = installation.now() - _aware(oldest)
    # Past twice the age: the purge job has had time to run and did not remove them.
    if purging.enabled and idle > 2 * purging.age.delta:
        return Finding(
            "uploads",
            "WARN",
            f"{summary}; the oldest is untouched for {_days(idle)}, past the purge age ({purging.age}).",
            "check that the purge-uploads job runs (`dockyard job list`) and that a job runner is up.",
        )
    return Finding("uploads", "OK", f"{summary}; the oldest untouched for {_days(idle)}.")


def check_gc(installation: Installation) -> Finding:
    from dockyard.jobs.models import JobRow

    engine = installation.engine
    assert engine is not None
    with engine.connect() as connection:
        last = connection.execute(
            select(JobRow.status, JobRow.finished_at, JobRow.created_at, JobRow.error)
            .where(JobRow.kind == "gc")
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(1)
        ).first()
    run = "run `dockyard garbage-collect` or schedule the gc job (gc.md)."
    if last is None:
        return Finding(
            "gc", "WARN", "garbage collection has never run: deleted images still take their space.", run
        )
    status, finished, created, error = last
    if status in ("queued", "running"):
        return Finding("gc", "OK", f"garbage collection is {status} (since {created:%Y-%m-%d %H:%M}).")
    if status != "succeeded":
        return Finding(
            "gc", "WARN", f"the last garbage collection {status}: {error or 'no reason recorded'}.", run
        )
    age = installation.now() - _aware(finished or created)
    summary = f"the last garbage collection succeeded {_days(age)} ago."
    if age > timedelta(days=GC_STALE_DAYS):
        return Finding("gc", "WARN", summary, run)
    return Finding("gc", "OK", summary)


def check_quotas(installation: Installation) -> Finding:
    from dockyard.projects.models import ProjectRow as Project

    engine = installation.engine
    assert engine is not None
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Project.name, Project.quota_used_bytes, Project.quota_limit_bytes, Project.quota_warn_percent
            )
            .where(Project.quota_limit_bytes.is_not(None))
            .order_by(Project.name)
        ).all()
    usage = [(name, used, limit or 0, warn) for name, used, limit, warn in rows]  # limit: never NULL here
    full = [name for name, used, limit, _ in usage if used >= limit]
    near = [name for name, used, limit, warn in usage if used < limit and 100 * used >= warn * limit]
    if full:
        return Finding(
            "quotas",
            "WARN",
            f"{len(full)} project(s) are at their quota, pushes to them are refused: {', '.join(full[:5])}.",
            "raise the quota (`dockyard project quota`) or delete images and run garbage collection.",
        )
    if near:
        return Finding(
            "quotas",
            "WARN",
            f"{len(near)} project(s) are past their quota warning level: {', '.join(near[:5])}.",
            "raise the quota or clean up before pushes are refused.",
        )
    return Finding("quotas", "OK", f"{len(rows)} project(s) have a quota; none is near it.")


DATABASE_CHECKS: tuple[tuple[str, Callable[[Installation], Finding]], ...] = (
    ("clock", check_clock),
    ("signing keys", check_signing_keys),
    ("uploads", check_uploads),
    ("gc", check_gc),
    ("quotas", check_quotas),
)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _days(delta: timedelta) -> str:
    if delta < timedelta(hours=1):
        return f"{max(delta.total_seconds(), 0) / 60:.0f} min"
    if delta < timedelta(days=2):
        return f"{delta.total_seconds() / 3600:.0f} h"
    return f"{delta.days} days"


def _first_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return (text_[0] if text_ else type(exc).__name__).rstrip(".")
