"""The vulnerability database: import OSV advisories, report its version, match packages, allowlist.

An import is one transaction: a failure anywhere (a malformed file, an unsafe archive, the database)
rolls all of it back and the previous version stays as it was. Documents stream in batches (BATCH):
only one batch of parsed advisories is in memory at a time. Per advisory id, a record whose `modified`
is newer than the stored one replaces it (its affected rows with it); the same or an older one changes
nothing, so importing the same export twice leaves the database as it was (the second import is logged
with added = updated = 0 and the version does not move). The version is the id of the last import that
added or updated something; each advisory keeps the import that last wrote it, so "what changed since
version N" is a query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update

from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, ResourceType
from dockyard.audit.services import AuditLog
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.models import ProjectRow
from dockyard.vulndb import osv, safetydb
from dockyard.vulndb.distros import osv_query
from dockyard.vulndb.interfaces import (
    AllowlistEntry,
    AllowlistInvalid,
    Finding,
    ImportReport,
    PackageLike,
    VulnDBStatus,
)
from dockyard.vulndb.matching import match_rows
from dockyard.vulndb.models import AdvisoryRow, AffectedRow, AllowlistRow, VulnImportRow
from dockyard.vulndb.sources import Counter, iter_documents
from dockyard.vulndb.versions import ecosystem_base, ecosystem_key, normalize_name

BATCH = 500
IMPORT_LOCK = 4242101  # PostgreSQL advisory lock key: two imports of the same ids would collide
_IN = 500  # ids per IN (...) list
MAX_VULN_ID = 128


class VulnDB:
    """`audit`: imports and allowlist changes are recorded in the audit log, in their own transaction
    (resource types `vulndb` and `vulndb_allowlist`), as done by `actor`."""

    def __init__(
        self, db: Database, clock: Callable[[], datetime] = utcnow, audit: AuditLog | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.audit = audit

    def _record(
        self,
        conn: Connection,
        actor: str,
        action: AuditAction,
        kind: ResourceType,
        name: str,
        detail: dict[str, Any],
    ) -> None:
        if self.audit is None:
            return
        who = ActorKind.SYSTEM if actor.startswith("cli:") or not actor else ActorKind.USER
        event = AuditEvent(action, actor, who, resource_type=kind, resource_name=name, detail=detail)
        self.audit.record_now(conn, event)

    # --- import -------------------------------------------------------------------------------
    def import_paths(
        self,
        paths: Sequence[str | os.PathLike[str]],
        source: str | None = None,
        progress: Callable[[int], None] | None = None,
        actor: str = "",
    ) -> ImportReport:
        """Import every OSV document under `paths` (files, directories, zip exports) in one transaction."""
        began, started = time.monotonic(), self.clock()
        counter = Counter()
        counts = {"documents": 0, "added": 0, "updated": 0, "unchanged": 0, "affected": 0}
        with self.db.write() as conn:
            if conn.dialect.name == "postgresql":  # imports one at a time (SQLite's write lock does that)
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({IMPORT_LOCK})")
            import_id = int(
                conn.execute(
                    insert(VulnImportRow)
                    .values(
                        started_at=started,
                        finished_at=started,
                        source=_source(paths, source),
                        documents=0,
                        added=0,
                        updated=0,
                        unchanged=0,
                        affected=0,
                        advisories_total=0,
                    )
                    .returning(VulnImportRow.id)
                ).scalar_one()
            )
            for advisories in _batches(_advisories(iter_documents(paths, counter)), BATCH):
                counts["documents"] += len(advisories)
                self._write_batch(conn, import_id, advisories, counts)
                if progress is not None:
                    progress(counts["documents"])
            total = int(conn.execute(select(func.count()).select_from(AdvisoryRow)).scalar_one())
            conn.execute(
                update(VulnImportRow)
                .where(VulnImportRow.id == import_id)
                .values(finished_at=self.clock(), advisories_total=total, **counts)
            )
            version = _version(conn)
            report = ImportReport(
                import_id=import_id,
                version=version,
                ignored=counter.ignored,
                advisories_total=total,
                seconds=round(time.monotonic() - began, 3),
                **counts,
            )
            detail = {"source": _source(paths, source)[:500], **report.as_dict()}
            self._record(conn, actor, AuditAction.CREATE, ResourceType.VULNDB, f"version {version}", detail)
        return report

    def _write_batch(
        self, conn: Connection, import_id: int, advisories: list[osv.Advisory], counts: dict[str, int]
    ) -> None:
        newest: dict[str, osv.Advisory] = {}
        for adv in advisories:  # the same id twice in one batch: the newer wins
            if adv.id not in newest or adv.modified > newest[adv.id].modified:
                newest[adv.id] = adv
        counts["unchanged"] += len(advisories) - len(newest)
        stored = dict(
            conn.execute(
                select(AdvisoryRow.id, AdvisoryRow.modified).where(AdvisoryRow.id.in_(list(newest)))
            ).all()
        )
        writes, replaced = [], []
        for ident, adv in newest.items():
            if ident not in stored:
                writes.append(adv)
                counts["added"] += 1
            elif adv.modified > stored[ident]:
                writes.append(adv)
                replaced.append(ident)
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
        if replaced:
            conn.execute(delete(AffectedRow).where(AffectedRow.advisory_id.in_(replaced)))
            conn.execute(delete(AdvisoryRow).where(AdvisoryRow.id.in_(replaced)))
        if not writes:
            return
        conn.execute(
            insert(AdvisoryRow),
            [
                {
                    "id": a.id,
                    "modified": a.modified,
                    "published": a.published,
                    "withdrawn": a.withdrawn,
                    "aliases": a.aliases,
                    "summary": a.summary,
                    "severity": a.severity,
                    "cvss_vector": a.cvss_vector,
                    "cvss_score": a.cvss_score,
                    "import_id": import_id,
                }
                for a in writes
            ],
        )
        rows = [
            {
                "advisory_id": a.id,
                "ecosystem": item.ecosystem,
                "package": item.package,
                "ranges": item.ranges,
                "versions": item.versions,
                "severity": item.severity,
            }
            for a in writes
            for item in a.affected
        ]
        if rows:
            conn.execute(insert(AffectedRow), rows)
        counts["affected"] += len(rows)

    # --- status -------------------------------------------------------------------------------
    def status(self) -> VulnDBStatus:
        with self.db.read() as conn:
            advisories = int(conn.execute(select(func.count()).select_from(AdvisoryRow)).scalar_one())
            withdrawn = int(
                conn.execute(
                    select(func.count()).select_from(AdvisoryRow).where(AdvisoryRow.withdrawn.is_not(None))
                ).scalar_one()
            )
            by_ecosystem = {
                str(eco): int(n)
                for eco, n in conn.execute(
                    select(AffectedRow.ecosystem, func.count()).group_by(AffectedRow.ecosystem)
                ).all()
            }
            version = _version(conn)
            last = conn.execute(select(VulnImportRow).order_by(VulnImportRow.id.desc()).limit(1)).first()
            change = (
                conn.execute(select(VulnImportRow).where(VulnImportRow.id == version)).first()
                if version
                else None
            )
        return VulnDBStatus(
            version=version,
            advisories=advisories,
            affected=sum(by_ecosystem.values()),
            withdrawn=withdrawn,
            by_ecosystem=dict(sorted(by_ecosystem.items())),
            last_import=_import_dict(last),
            last_change=_import_dict(change),
        )

    def changed_since(self, version: int) -> list[str]:
        """Ids of the advisories written by imports after `version` (what a rescan has to look at)."""
        with self.db.read() as conn:
            return list(conn.execute(select(AdvisoryRow.id).where(AdvisoryRow.import_id > version)).scalars())

    # --- matching -----------------------------------------------------------------------------
    def match(
        self,
        packages: Iterable[PackageLike],
        project: str | None = None,
        include_allowlisted: bool = False,
    ) -> list[Finding]:
        """The advisories that affect `packages`, most severe first.

        Allowlisted ids (system-wide ones, and with `project` that project's) that have not expired are
        left out, or kept with `allowlisted=True` when `include_allowlisted`."""
        packages = list(packages)
        wanted: dict[str, set[str]] = {}  # ecosystem key -> normalised names
        for pkg in map(osv_query, packages):
            name = normalize_name(pkg.ecosystem, pkg.name)
            for eco in _lookup_keys(pkg.ecosystem):
                wanted.setdefault(eco, set()).add(name)
        rows: list[Any] = []
        with self.db.read() as conn:
            for eco, names in wanted.items():
                ordered = sorted(names)
                for start in range(0, len(ordered), _IN):
                    rows.extend(
                        conn.execute(
                            select(
                                AffectedRow.ecosystem,
                                AffectedRow.package,
                                AffectedRow.ranges,
                                AffectedRow.versions,
                                AffectedRow.severity,
                                AdvisoryRow.id,
                                AdvisoryRow.aliases,
                                AdvisoryRow.summary,
                                AdvisoryRow.severity.label("level"),
                                AdvisoryRow.cvss_score,
                                AdvisoryRow.cvss_vector,
                            )
                            .join(AdvisoryRow, AdvisoryRow.id == AffectedRow.advisory_id)
                            .where(
                                AffectedRow.ecosystem == eco,
                                AffectedRow.package.in_(ordered[start : start + _IN]),
                                AdvisoryRow.withdrawn.is_(None),
                            )
                        ).all()
                    )
            allowed = self._allowed_ids(conn, project) if rows else set()
        findings = match_rows(packages, rows)
        for finding in findings:
            finding.allowlisted = bool(finding.ids() & allowed)
        return [f for f in findings if include_allowlisted or not f.allowlisted]

    # --- allowlist ----------------------------------------------------------------------------
    def allow(
        self,
        vuln_id: str,
        project: str | None = None,
        expires_at: datetime | None = None,
        reason: str = "",
        created_by: str = "",
    ) -> AllowlistEntry:
        """Accept `vuln_id` (a CVE or advisory id, matched against ids and aliases) everywhere, or in
        `project`, until `expires_at`. Allowing it again replaces the entry."""
        ident = vuln_id.strip()  # kept as written; compared without case
        if not ident or len(ident) > MAX_VULN_ID or any(c.isspace() for c in ident):
            raise AllowlistInvalid(f"not a vulnerability id: {vuln_id[:60]!r}")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise AllowlistInvalid("the expiry is in the past")
        with self.db.write() as conn:
            project_id = _project_id(conn, project)
            replaced = conn.execute(delete(AllowlistRow).where(*_scope(project_id), _same_id(ident))).rowcount
            conn.execute(
                insert(AllowlistRow).values(
                    project_id=project_id,
                    vuln_id=ident,
                    expires_at=expires_at,
                    reason=reason[:1000],
                    created_by=created_by[:255],
                    created_at=now,
                )
            )
            detail = {
                "project": project,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "reason": reason[:200],
            }
            action = AuditAction.UPDATE if replaced else AuditAction.CREATE
            self._record(conn, created_by, action, ResourceType.VULNDB_ALLOWLIST, ident, detail)
        return next(e for e in self.allowlist(project) if e.vuln_id.upper() == ident.upper())

    def disallow(self, vuln_id: str, project: str | None = None, actor: str = "") -> bool:
        with self.db.write() as conn:
            result = conn.execute(
                delete(AllowlistRow).where(*_scope(_project_id(conn, project)), _same_id(vuln_id.strip()))
            )
            if result.rowcount:
                detail: dict[str, Any] = {"project": project}
                kind = ResourceType.VULNDB_ALLOWLIST
                self._record(conn, actor, AuditAction.DELETE, kind, vuln_id.strip(), detail)
        return bool(result.rowcount)

    def allowlist(self, project: str | None = None) -> list[AllowlistEntry]:
        """The entries of one scope (system-wide with None), expired ones included."""
        with self.db.read() as conn:
            project_id = _project_id(conn, project)
            rows = conn.execute(
                select(AllowlistRow).where(*_scope(project_id)).order_by(AllowlistRow.vuln_id)
            ).all()
        return [
            AllowlistEntry(
                id=r.id,
                vuln_id=r.vuln_id,
                project=project,
                expires_at=r.expires_at,
                reason=r.reason,
                created_by=r.created_by,
                created_at=r.created_at,
            )
            for r in rows
        ]

    def _allowed_ids(self, conn: Connection, project: str | None) -> set[str]:
        now = self.clock()
        scope: ColumnElement[bool] = AllowlistRow.project_id.is_(None)
        if project is not None:
            project_id = _project_id(conn, project)
            scope = scope | (AllowlistRow.project_id == project_id)
        rows = conn.execute(select(AllowlistRow.vuln_id, AllowlistRow.expires_at).where(scope)).all()
        return {vid.upper() for vid, expires in rows if expires is None or expires > now}


def _advisories(documents: Iterator[tuple[str, Any]]) -> Iterator[osv.Advisory]:
    for where, doc in documents:
        if safetydb.is_safety_db(doc):
            yield from safetydb.advisories(doc, where)
        else:
            yield osv.parse_advisory(doc, where)


def _lookup_keys(ecosystem: str) -> list[str]:
    """ "Debian:12" meets advisories for "debian:12" and for plain "debian"."""
    key = ecosystem_key(ecosystem)
    base = ecosystem_base(ecosystem)
    return [key] if key == base else [key, base]


def _project_id(conn: Connection, project: str | None) -> int | None:
    if project is None:
        return None
    from dockyard.projects.interfaces import ProjectNotFound

    found = conn.execute(select(ProjectRow.id).where(ProjectRow.name == project)).scalar_one_or_none()
    if found is None:
        raise ProjectNotFound(f"project {project!r} not found")
    return int(found)


def _same_id(ident: str) -> Any:
    return func.upper(AllowlistRow.vuln_id) == ident.upper()


def _scope(project_id: int | None) -> list[Any]:
    if project_id is None:
        return [AllowlistRow.project_id.is_(None)]
    return [AllowlistRow.project_id == project_id]


def _version(conn: Connection) -> int:
    value = conn.execute(
        select(func.max(VulnImportRow.id)).where((VulnImportRow.added > 0) | (VulnImportRow.updated > 0))
    ).scalar_one()
    return int(value or 0)


def _import_dict(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = (
        "id",
        "started_at",
        "finished_at",
        "source",
        "documents",
        "added",
        "updated",
        "unchanged",
        "affected",
        "advisories_total",
    )
    return {k: getattr(row, k) for k in keys}


def _source(paths: Sequence[str | os.PathLike[str]], source: str | None) -> str:
    return (source or " ".join(str(p) for p in paths))[:4000]


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
