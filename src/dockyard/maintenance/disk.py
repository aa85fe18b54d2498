"""`dockyard doctor disk`: why is the disk full, and what would garbage collection free?

What is stored comes from the database (blobs, open uploads, each project's usage); what garbage
collection would free comes from garbage collection itself, run as a dry run (`gc.GarbageCollector`
with `dry_run`: the same queries as a real run, deleting and writing nothing), once as it runs by
default and once with `delete_untagged`. Retention is not run: a dry run of it records a run per
project, so the report names the projects that have a policy and the command that shows what each
would delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.db.session import Database
from dockyard.gc.interfaces import GCOptions, GCReport
from dockyard.gc.services import GarbageCollector
from dockyard.maintenance.doctor import Finding, human_size
from dockyard.projects.models import ProjectRow
from dockyard.retention.models import RetentionPolicyRow
from dockyard.storage.blobs import live
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.models import Blob, Upload

TOP_PROJECTS = 5


@dataclass(frozen=True)
class DiskReport:
    blobs: int
    blob_bytes: int
    upload_sessions: int
    upload_bytes: int
    largest_projects: list[tuple[str, int]]
    gc_default: GCReport
    gc_untagged: GCReport
    retention_projects: list[str]

    def findings(self) -> list[Finding]:
        stored = Finding(
            "stored",
            "OK",
            f"{self.blobs} blobs hold {human_size(self.blob_bytes)}; {self.upload_sessions} open upload "
            f"session(s) hold {human_size(self.upload_bytes)}.",
        )
        largest = ", ".join(f"{name} {human_size(size)}" for name, size in self.largest_projects)
        projects = Finding("projects", "OK", f"the largest projects: {largest or 'none has content'}.")
        default, untagged = self.gc_default, self.gc_untagged
        gc = Finding(
            "gc",
            "WARN" if default.bytes_freed else "OK",
            f"garbage collection would free {human_size(default.bytes_freed)} now ({default.blobs_deleted} "
            f"blobs nothing references); with --delete-untagged {human_size(untagged.bytes_freed)} "
            f"({untagged.manifests_deleted} untagged manifests and the blobs only they use).",
            "`dockyard garbage-collect` (add --delete-untagged to drop untagged manifests too)"
            if default.bytes_freed or untagged.bytes_freed
            else "",
        )
        if self.retention_projects:
            names = ", ".join(self.retention_projects[:TOP_PROJECTS])
            retention = Finding(
                "retention",
                "OK",
                f"{len(self.retention_projects)} project(s) have a retention policy: {names}.",
                "`dockyard retention run PROJECT --dry-run` shows what a project's policy would delete.",
            )
        else:
            retention = Finding(
                "retention",
                "OK",
                "no project has a retention policy: every tag is kept until someone deletes it.",
                "a policy per project (`dockyard retention set`) keeps the last N tags or those pulled "
                "lately.",
            )
        return [stored, projects, gc, retention]


def disk_report(db: Database, driver: StorageDriver) -> DiskReport:
    with db.read() as connection:
        blobs, blob_bytes = connection.execute(
            select(func.count(), func.coalesce(func.sum(Blob.size), 0)).where(live())
        ).one()
        sessions, upload_bytes = connection.execute(
            select(func.count(), func.coalesce(func.sum(Upload.size), 0))
        ).one()
        largest = connection.execute(
            select(ProjectRow.name, ProjectRow.quota_used_bytes)
            .where(ProjectRow.quota_used_bytes > 0)
            .order_by(ProjectRow.quota_used_bytes.desc(), ProjectRow.name)
            .limit(TOP_PROJECTS)
        ).all()
        retention = connection.scalars(
            select(ProjectRow.name)
            .join(RetentionPolicyRow, RetentionPolicyRow.project_id == ProjectRow.id)
            .order_by(ProjectRow.name)
        ).all()
    collector = GarbageCollector(db, driver, InProcessChangeFeed())
    return DiskReport(
        blobs=int(blobs),
        blob_bytes=int(blob_bytes),
        upload_sessions=int(sessions),
        upload_bytes=int(upload_bytes),
        largest_projects=[(name, int(size)) for name, size in largest],
        gc_default=collector.run(GCOptions(dry_run=True)),
        gc_untagged=collector.run(GCOptions(dry_run=True, delete_untagged=True)),
        retention_projects=list(retention),
    )
