"""`Scans`: scan an artifact (the scanning inventory matched by the vulnerability database) and store
the result per repository and digest; read summaries (one indexed row) and reports.

A result replaces the previous one in one transaction (the row's counts and status, its findings
deleted and written again), and a report is read in one statement (the row joined with its findings),
so a reader sees the old result or the new one, never a mix, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from dockyard.db.base import utcnow
from dockyard.db.dialect import upsert
from dockyard.db.lookups import Lookup
from dockyard.db.session import Database
from dockyard.errors import DockyardError, NameUnknown
from dockyard.projects.rbac import project_of
from dockyard.registry.models import Repository
from dockyard.scans.interfaces import (
    BUILT_IN,
    SEVERITIES,
    ScanNotFound,
    ScanReport,
    ScanSummary,
    StoredFinding,
)
from dockyard.scans.models import ScanFindingRow, ScanRow, ScanSettingsRow

if TYPE_CHECKING:
    from dockyard.jobs.queue import JobQueue
    from dockyard.registry.services import Registry
    from dockyard.scanning.interfaces import Limits
    from dockyard.scanning.models import InventoryReport
    from dockyard.storage.blobs import BlobStore
    from dockyard.vulndb.services import VulnDB

log = logging.getLogger("dockyard.scans")
KIND = "scan"
COUNT_COLUMNS = ("critical", "high", "medium", "low", "negligible", "unknown")  # SEVERITIES' order
RESCAN_LIMIT = 10_000  # artifacts one rescan job looks at, the most recently scanned first
_RESULT = (
    ScanRow.status,
    ScanRow.reason,
    ScanRow.vulndb_version,
    ScanRow.scanned_at,
    ScanRow.allowlisted,
    ScanRow.allowlist_until,
    ScanRow.scanner,
)
_SUMMARY = (
    select(*_RESULT, *(getattr(ScanRow, c) for c in COUNT_COLUMNS))
    .join(Repository, Repository.id == ScanRow.repository_id)
    .where(Repository.name == bindparam("repository"), ScanRow.digest == bindparam("digest"))
)


def _time(value: Any) -> datetime | None:
    """A timestamp as a raw driver returns it (SQLite: text, naive UTC)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _summary(row: Any) -> ScanSummary:
    status, reason, version, scanned_at, allowlisted, _until, scanner, *counts = row
    has_result = scanned_at is not None
    return ScanSummary(
        status=status,
        counts=dict(zip(SEVERITIES, (int(n or 0) for n in counts), strict=True)) if has_result else None,
        allowlisted=int(allowlisted or 0),
        vulndb_version=None if version is None else int(version),
        scanned_at=_time(scanned_at),
        reason=reason or "",
        scanner=scanner,
    )


class Scans:
    """`registry`, `blobs` and `vulndb` are needed to run scans (a job worker, the CLI), `jobs` to
    request them; reading summaries and reports needs the database only."""

    def __init__(
        self,
        db: Database,
        registry: Registry | None = None,
        blobs: BlobStore | None = None,
        vulndb: VulnDB | None = None,
        jobs: JobQueue | None = None,
        limits: Limits | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.blobs = blobs
        self.vulndb = vulndb
        self.jobs = jobs
        self.limits = limits
        # on_change(repository): after a result is stored or recounted there (pull gates decide again)
        self.on_change = on_change
        self._prepared: Lookup | None = None

    @property
    def _summary(self) -> Lookup:
        if self._prepared is None:  # compiled on the first summary, not for every Scans built
            self._prepared = self.db.lookups.prepare(_SUMMARY)
        return self._prepared

    # --- reads ----------------------------------------------------------------------------------
    def summary(self, repository: str, digest: str, *, wait: bool = True) -> ScanSummary | None:
        """The artifact's scan summary, or None if it was never scanned: one indexed row (by the
        repository's unique name and the scan's primary key), on a raw driver connection (db.lookups;
        `wait=False` raises WouldBlock rather than wait, for the event loop)."""
        row = self.db.lookups.one(self._summary, {"repository": repository, "digest": digest}, wait=wait)
        if row is None:
            return None
        until = _time(row[5])
        if until is not None and until <= utcnow():  # an allowlist entry that hid findings expired
            return self.recount(repository, digest)
        return _summary(row)

    def summaries(self, repository: str, digests: Iterable[str]) -> dict[str, ScanSummary]:
        """Summaries of several artifacts of one repository (a listing's page), in one query."""
        wanted = list(digests)
        if not wanted:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(
                select(ScanRow.digest, *_RESULT, *(getattr(ScanRow, c) for c in COUNT_COLUMNS))
                .join(Repository, Repository.id == ScanRow.repository_id)
                .where(Repository.name == repository, ScanRow.digest.in_(wanted))
            ).all()
        return {row[0]: _summary(row[1:]) for row in rows}

    def recount(self, repository: str, digest: str) -> ScanSummary | None:
        """Apply the allowlist as it is now to the stored findings (an entry expired, or was added or
        removed): their flags and the counts are written again. Nothing is scanned."""
        from dockyard.vulndb.services import VulnDB

        vulndb = self.vulndb or VulnDB(self.db)
        with self.db.write() as conn:
            head = conn.execute(
                select(ScanRow.repository_id, ScanRow.project_id)
                .join(Repository, Repository.id == ScanRow.repository_id)
                .where(
                    Repository.name == repository, ScanRow.digest == digest, ScanRow.scanned_at.is_not(None)
                )
            ).first()
            if head is not None:
                repository_id, project_id = int(head[0]), head[1]
                entries = _allow_entries(vulndb, _project_name(repository, project_id))
                findings = conn.execute(
                    select(
                        ScanFindingRow.id,
                        ScanFindingRow.advisory_id,
                        ScanFindingRow.aliases,
                        ScanFindingRow.severity,
                    ).where(ScanFindingRow.repository_id == repository_id, ScanFindingRow.digest == digest)
                ).all()
                counts = dict.fromkeys(COUNT_COLUMNS, 0)
                hidden, expiries = 0, list[datetime]()
                for ident, advisory, aliases, severity in findings:
                    ids = {advisory.upper(), *(a.upper() for a in aliases or [])}
                    allowed = [i for i in ids if i in entries]
                    conn.execute(
                        update(ScanFindingRow)
                        .where(ScanFindingRow.id == ident)
                        .values(allowlisted=bool(allowed))
                    )
                    if allowed:
                        hidden += 1
                        if (expiry := _hidden_until(ids, entries)) is not None:
                            expiries.append(expiry)
                    else:
                        counts[COUNT_COLUMNS[SEVERITIES.index(severity)]] += 1
                conn.execute(
                    update(ScanRow)
                    .where(ScanRow.repository_id == repository_id, ScanRow.digest == digest)
                    .values(allowlisted=hidden, allowlist_until=min(expiries, default=None), **counts)
                )
        self._changed(repository)
        row = self.db.lookups.one(self._summary, {"repository": repository, "digest": digest})
        return None if row is None else _summary(row)

    def _changed(self, repository: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(repository)  # that repository's pull decisions go
            except Exception:  # the result is stored; a feed that is down must not fail the scan
                log.exception("the change feed was not told of a stored scan")

    def recount_scope(self, project: str | None) -> int:
        """`recount` every finished scan of `project` (None: of every project, after a system-wide
        allowlist change); how many. Bounded by RESCAN_LIMIT."""
        from dockyard.projects.models import ProjectRow

        query = (
            select(Repository.name, ScanRow.digest)
            .join(Repository, Repository.id == ScanRow.repository_id)
            .where(ScanRow.scanned_at.is_not(None))
            .limit(RESCAN_LIMIT)
        )
        if project is not None:
            query = query.join(ProjectRow, ProjectRow.id == ScanRow.project_id).where(
                ProjectRow.name == project
            )
        with self.db.read() as conn:
            found = conn.execute(query).all()
        for name, digest in found:
            self.recount(str(name), str(digest))
        return len(found)

    def report(self, repository: str, digest: str, min_severity: str | None = None) -> ScanReport:
        """The stored scan with its findings (of `min_severity` or worse), read in one statement."""
        levels = SEVERITIES if min_severity is None else SEVERITIES[: SEVERITIES.index(min_severity) + 1]
        finding_columns = [
            c for c in ScanFindingRow.__table__.columns if c.name not in ("id", "repository_id", "digest")
        ]
        with self.db.read() as conn:
            rows = conn.execute(
                select(ScanRow.__table__, *(c.label(f"f_{c.name}") for c in finding_columns))
                .join(Repository, Repository.id == ScanRow.repository_id)
                .outerjoin(
                    ScanFindingRow,
                    (ScanFindingRow.repository_id == ScanRow.repository_id)
                    & (ScanFindingRow.digest == ScanRow.digest)
                    & ScanFindingRow.severity.in_(levels),
                )
                .where(Repository.name == repository, ScanRow.digest == digest)
                .order_by(ScanFindingRow.id)
            ).all()
        if not rows:
            raise ScanNotFound(f"{repository}@{digest} has not been scanned")
        head = rows[0]._mapping
        summary = _summary([head[c.name] for c in _RESULT] + [head[c] for c in COUNT_COLUMNS])
        findings = [
            StoredFinding(**{c.name: row._mapping[f"f_{c.name}"] for c in finding_columns})
            for row in rows
            if row._mapping["f_advisory_id"] is not None
        ]
        findings.sort(key=lambda f: (SEVERITIES.index(f.severity), f.package, f.advisory_id))
        return ScanReport(
            repository=repository,
            digest=digest,
            summary=summary,
            requested_at=head["requested_at"],
            started_at=head["started_at"],
            finished_at=head["finished_at"],
            job_id=head["job_id"],
            packages=head["packages"],
            incomplete=list(head["incomplete"] or []),
            findings=findings,
        )

    # --- requests -------------------------------------------------------------------------------
    def request(
        self, repository: str, digest: str, connection: Connection | None = None, scanner: str | None = None
    ) -> int:
        """Mark the artifact's scan pending and queue a `scan` job for it; the job's id. The previous
        result stays readable until the job replaces it. `scanner`: which one (scans.scanners; None:
        the default when the job runs)."""
        if self.jobs is None:
            raise RuntimeError("Scans was built without a job queue")
        if connection is None:
            with self.db.write() as conn:  # the job's runners are told once it commits (JobQueue)
                return self._request(conn, repository, digest, scanner)
        return self._request(connection, repository, digest, scanner)

    def _request(self, conn: Connection, repository: str, digest: str, scanner: str | None = None) -> int:
        assert self.jobs is not None
        repository_id, project_id = _repository(conn, repository)
        params = {"repository": repository, "digest": digest}
        if scanner is not None:
            params["scanner"] = scanner
        job_id = self.jobs.enqueue(KIND, params, connection=conn)
        _set_status(conn, repository_id, project_id, digest, "pending", job_id=job_id, requested=True)
        return job_id

    def scan_on_push(self, project: str) -> bool:
        with self.db.read() as conn:
            from dockyard.projects.models import ProjectRow

            value = conn.execute(
                select(ScanSettingsRow.scan_on_push)
                .join(ProjectRow, ProjectRow.id == ScanSettingsRow.project_id)
                .where(ProjectRow.name == project)
            ).scalar_one_or_none()
        return bool(value)

    def set_scan_on_push(self, project: str, enabled: bool) -> None:
        from dockyard.projects.interfaces import ProjectNotFound
        from dockyard.projects.models import ProjectRow

        with self.db.write() as conn:
            project_id = conn.execute(select(ProjectRow.id).where(ProjectRow.name == project)).scalar()
            if project_id is None:
                raise ProjectNotFound(f"project {project!r} not found")
            upsert(
                conn,
                ScanSettingsRow,
                {"project_id": project_id, "scan_on_push": enabled},
                ["project_id"],
                ["scan_on_push"],
            )

    def stale(self, version: int, limit: int = RESCAN_LIMIT) -> list[tuple[str, str]]:
        """(repository, digest) of scans done with a database older than `version`, the most recently
        scanned first, at most `limit`. Failed scans are not among them: what failed them (a layer that
        cannot be read) is not in the database; a scan asked for again retries one."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(Repository.name, ScanRow.digest)
                .join(Repository, Repository.id == ScanRow.repository_id)
                .where(ScanRow.status == "done", ScanRow.vulndb_version < version)
                .order_by(ScanRow.scanned_at.desc())
                .limit(limit)
            ).all()
        return [(str(name), str(digest)) for name, digest in rows]

    # --- running --------------------------------------------------------------------------------
    def scan(
        self,
        repository: str,
        reference: str,
        job_id: int | None = None,
        inventory: InventoryReport | None = None,
    ) -> ScanReport:
        """Scan the artifact now and store the result (done, or failed with the reason); the report.
        Raises (and stores nothing) when the manifest does not exist. `inventory`: the artifact's,
        already made (`dockyard scan` prints from it), not made again."""
        if self.registry is None or self.blobs is None or self.vulndb is None:
            raise RuntimeError("Scans was built without a registry, blobs and a vulnerability database")
        from dockyard.scanning.interfaces import NotAnImage
        from dockyard.scanning.services import Inventory

        digest = self.registry.get_manifest(repository, reference).digest
        with self.db.write() as conn:
            repository_id, project_id = _repository(conn, repository)
            _set_status(conn, repository_id, project_id, digest, "running", job_id=job_id)
        version = self.vulndb.status().version
        until: datetime | None = None
        try:
            if inventory is None or inventory.digest != digest:
                inventory = Inventory(self.registry, self.blobs, self.limits).inventory(repository, digest)
            failure = _unreadable_layers(inventory)
            rows: list[dict[str, Any]] = []
            if failure is None:
                project = _project_name(repository, project_id)
                rows = self._findings(inventory, project)
                until = _until(rows, _allow_entries(self.vulndb, project))
        except NotAnImage as exc:
            failure = f"not a container image: {exc.message}"
        except DockyardError as exc:
            failure = exc.message
        except Exception as exc:  # a layer the walker chokes on: stored as failed, then raised
            self._store_failure(
                repository, repository_id, project_id, digest, f"scan error: {exc}", job_id, BUILT_IN
            )
            raise
        if failure is not None or inventory is None:
            self._store_failure(
                repository, repository_id, project_id, digest, failure or "no inventory", job_id, BUILT_IN
            )
        else:
            self._store(
                repository, repository_id, project_id, digest, version, inventory, rows, job_id, until
            )
        return self.report(repository, digest)

    def scan_external(
        self,
        repository: str,
        reference: str,
        scanner: str,
        run: Callable[[str, str], list[dict[str, Any]]],
        job_id: int | None = None,
    ) -> ScanReport:
        """Scan the artifact with an external scanner (`run(digest, media_type)` gives its findings,
        scans/adapters.py) and store the result as `scan` does: this registry's allowlist applied, the
        counts, one transaction. Whatever fails (the scanner down, a report that is not one) is stored
        as failed with the reason, never as "no vulnerabilities"."""
        if self.registry is None:
            raise RuntimeError("Scans was built without a registry")
        from dockyard.vulndb.services import VulnDB

        vulndb = self.vulndb or VulnDB(self.db)
        record = self.registry.get_manifest(repository, reference)
        digest = record.digest
        with self.db.write() as conn:
            repository_id, project_id = _repository(conn, repository)
            _set_status(conn, repository_id, project_id, digest, "running", job_id=job_id)
        failure: str | None = None
        rows: list[dict[str, Any]] = []
        try:
            rows = run(digest, record.media_type)
        except DockyardError as exc:
            failure = f"scanner {scanner}: {exc.message}"
        except Exception as exc:  # a bug, not the scanner's answer: stored as failed too
            log.exception("scan of %s with scanner %s", digest, scanner)
            failure = f"scanner {scanner}: {type(exc).__name__}: {exc}"
        if failure is not None:
            self._store_failure(repository, repository_id, project_id, digest, failure, job_id, scanner)
            return self.report(repository, digest)
        entries = _allow_entries(vulndb, _project_name(repository, project_id))
        for row in rows:
            ids = {row["advisory_id"].upper(), *(a.upper() for a in row["aliases"])}
            row["allowlisted"] = any(i in entries for i in ids)
        self._store_rows(
            repository, repository_id, project_id, digest, None, None, [], rows, job_id,
            _until(rows, entries),
            scanner=scanner,
        )
        return self.report(repository, digest)

    def _findings(self, inventory: InventoryReport, project: str | None) -> list[dict[str, Any]]:
        assert self.vulndb is not None
        rows = []
        for image in inventory.images:
            for finding in self.vulndb.match(image.packages, project, include_allowlisted=True):
                package = finding.package
                rows.append(
                    {
                        "image": image.manifest,
                        "platform": image.platform[:64],
                        "advisory_id": finding.advisory_id,
                        "aliases": finding.aliases,
                        "summary": finding.summary,
                        "severity": finding.severity,
                        "cvss_score": finding.cvss_score,
                        "cvss_vector": finding.cvss_vector,
                        "ecosystem": finding.ecosystem,
                        "package": finding.name,
                        "installed_version": finding.installed_version,
                        "fixed_versions": finding.fixed_versions,
                        "layer": package.layer,
                        "path": package.path,
                        "purl": package.purl,
                        "allowlisted": finding.allowlisted,
                    }
                )
        return rows

    def _store(
        self,
        repository: str,
        repository_id: int,
        project_id: int | None,
        digest: str,
        version: int,
        inventory: InventoryReport,
        rows: list[dict[str, Any]],
        job_id: int | None,
        until: datetime | None,
    ) -> None:
        incomplete = [
            {"image": image.manifest, **u.to_json()} for image in inventory.images for u in image.unreadable
        ]
        packages = sum(len(image.packages) for image in inventory.images)
        self._store_rows(
            repository, repository_id, project_id, digest, version, packages, incomplete, rows, job_id,
            until,
            scanner=BUILT_IN,
        )

    def _store_rows(
        self,
        repository: str,
        repository_id: int,
        project_id: int | None,
        digest: str,
        version: int | None,
        packages: int | None,
        incomplete: list[dict[str, str]],
        rows: list[dict[str, Any]],
        job_id: int | None,
        until: datetime | None,
        *,
        scanner: str,
    ) -> None:
        """`version` and `packages` None: an external scanner's result (no database version here, no
        package count in the spec's report)."""
        counts = dict.fromkeys(COUNT_COLUMNS, 0)
        for row in rows:
            if not row["allowlisted"]:
                counts[COUNT_COLUMNS[SEVERITIES.index(row["severity"])]] += 1
        now = utcnow()
        with self.db.write() as conn:
            _set_status(conn, repository_id, project_id, digest, "done", job_id=job_id)
            conn.execute(_findings_of(repository_id, digest))
            if rows:
                conn.execute(
                    insert(ScanFindingRow),
                    [{"repository_id": repository_id, "digest": digest, **r} for r in rows],
                )
            conn.execute(
                update(ScanRow)
                .where(ScanRow.repository_id == repository_id, ScanRow.digest == digest)
                .values(
                    finished_at=now,
                    scanned_at=now,
                    vulndb_version=version,
                    packages=packages,
                    allowlisted=sum(1 for r in rows if r["allowlisted"]),
                    allowlist_until=until,
                    incomplete=incomplete,
                    scanner=scanner,
                    **counts,
                )
            )
        log.info("scan of %s: %s", digest, counts)
        self._changed(repository)

    def _store_failure(
        self,
        repository: str,
        repository_id: int,
        project_id: int | None,
        digest: str,
        reason: str,
        job_id: int | None,
        scanner: str,
    ) -> None:
        log.warning("scan of %s failed: %s", digest, reason)
        with self.db.write() as conn:
            _set_status(conn, repository_id, project_id, digest, "failed", job_id=job_id)
            conn.execute(_findings_of(repository_id, digest))
            conn.execute(
                update(ScanRow)
                .where(ScanRow.repository_id == repository_id, ScanRow.digest == digest)
                .values(
                    reason=reason[:2000],
                    finished_at=utcnow(),
                    scanned_at=None,
                    vulndb_version=None,
                    packages=None,
                    allowlisted=None,
                    allowlist_until=None,
                    incomplete=None,
                    scanner=scanner,
                    **dict.fromkeys(COUNT_COLUMNS),
                )
            )
        self._changed(repository)


def _allow_entries(vulndb: VulnDB, project: str | None) -> dict[str, datetime | None]:
    """The allowlist ids in force for `project` (and system-wide), upper-cased, with their expiry."""
    now = utcnow()
    entries = vulndb.allowlist(None) + (vulndb.allowlist(project) if project is not None else [])
    found: dict[str, datetime | None] = {}
    for entry in entries:
        if entry.expires_at is not None and entry.expires_at <= now:
            continue
        key = entry.vuln_id.upper()
        if key in found and (found[key] is None or entry.expires_at is None):
            found[key] = None
        elif key in found:
            found[key] = max(found[key], entry.expires_at)  # type: ignore[type-var]
        else:
            found[key] = entry.expires_at
    return found


def _hidden_until(ids: set[str], entries: dict[str, datetime | None]) -> datetime | None:
    """Until when the allowlist hides a finding with these ids (None: for good, or not at all)."""
    matched = [entries[i] for i in ids if i in entries]
    if not matched or any(e is None for e in matched):
        return None
    return max(e for e in matched if e is not None)


def _until(rows: list[dict[str, Any]], entries: dict[str, datetime | None]) -> datetime | None:
    """When the first allowlist entry that hid one of these findings expires (None: never)."""
    expiries = list[datetime]()
    for row in rows:
        if row["allowlisted"]:
            ids = {row["advisory_id"].upper(), *(a.upper() for a in row["aliases"])}
            if (expiry := _hidden_until(ids, entries)) is not None:
                expiries.append(expiry)
    return min(expiries, default=None)


def _findings_of(repository_id: int, digest: str) -> Any:
    return delete(ScanFindingRow).where(
        ScanFindingRow.repository_id == repository_id, ScanFindingRow.digest == digest
    )


def _unreadable_layers(inventory: InventoryReport) -> str | None:
    """Why the scan fails: a layer that could not be read (missing blob, not a tar). Package formats
    it could not read are kept as `incomplete` with a result."""
    reasons = [
        f"layer {u.layer} unreadable: {u.reason}"
        for image in inventory.images
        for u in image.unreadable
        if u.format == "layer"
    ]
    if not inventory.images:
        return "no image to scan: " + "; ".join(f"{d}: {why}" for d, why in inventory.not_images.items())
    return "; ".join(reasons) if reasons else None


def _project_name(repository: str, project_id: int | None) -> str | None:
    """The project whose allowlist applies (None: outside any project, the system-wide one only)."""
    return project_of(repository) if project_id is not None else None


def _repository(conn: Connection, repository: str) -> tuple[int, int | None]:
    row = conn.execute(
        select(Repository.id, Repository.project_id).where(Repository.name == repository)
    ).first()
    if row is None:
        raise NameUnknown(detail={"name": repository})
    return int(row[0]), None if row[1] is None else int(row[1])


def _set_status(
    conn: Connection,
    repository_id: int,
    project_id: int | None,
    digest: str,
    status: str,
    *,
    job_id: int | None = None,
    requested: bool = False,
) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "repository_id": repository_id,
        "digest": digest,
        "project_id": project_id,
        "status": status,
        "reason": "",
        "job_id": job_id,
        "requested_at": now,
    }
    changed = ["project_id", "status", "reason", "job_id"]
    if requested:
        changed.append("requested_at")
    if status == "running":
        values["started_at"] = now
        changed.append("started_at")
    upsert(conn, ScanRow, values, ["repository_id", "digest"], changed)
