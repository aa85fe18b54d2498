"""`dockyard doctor disk`: what is stored and what garbage collection would free, on a real SQLite and
PostgreSQL database and filesystem storage; the GC figures come from a real dry run of the collector."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from dockyard.db.session import Database
from dockyard.maintenance.disk import disk_report
from dockyard.projects.models import ProjectRow
from dockyard.retention.models import RetentionPolicyRow
from dockyard.storage.driver.filesystem import FilesystemDriver
from dockyard.storage.models import Blob

pytestmark = pytest.mark.db_independent  # the `database` fixture runs each test on both databases

NOW = dt.datetime.now(dt.UTC)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_what_is_stored_and_what_gc_would_free(tmp_path: Path, database: Database) -> None:
    old, fresh = NOW - dt.timedelta(days=3), NOW  # GC's safety window is 2 h
    with database.write() as connection:
        connection.execute(insert(Blob).values(digest=_digest("orphan"), size=3 << 20, created_at=old))
        connection.execute(insert(Blob).values(digest=_digest("young"), size=1 << 20, created_at=fresh))
        team = connection.execute(
            insert(ProjectRow).values(name="team", quota_used_bytes=5 << 20, created_at=NOW, updated_at=NOW)
        ).inserted_primary_key[0]
        connection.execute(insert(ProjectRow).values(name="empty", created_at=NOW, updated_at=NOW))
        connection.execute(insert(RetentionPolicyRow).values(project_id=team, rules=[], updated_at=NOW))

    report = disk_report(database, FilesystemDriver(tmp_path / "storage"))
    findings = {finding.check: finding for finding in report.findings()}

    assert report.blobs == 2 and report.blob_bytes == 4 << 20
    assert findings["stored"].summary.startswith("2 blobs hold 4.0 MiB; 0 open upload session(s)")
    assert findings["projects"].summary == "the largest projects: team 5.0 MiB."
    # The old orphan only: the young one is inside the safety window.
    assert report.gc_default.bytes_freed == 3 << 20 and report.gc_default.blobs_deleted == 1
    assert findings["gc"].verdict == "WARN"
    assert "would free 3.0 MiB now (1 blobs nothing references)" in findings["gc"].summary
    assert "dockyard garbage-collect" in findings["gc"].action
    assert findings["retention"].summary == "1 project(s) have a retention policy: team."
    # A dry run: nothing was deleted or tombstoned.
    with database.read() as connection:
        assert (
            connection.scalar(select(func.count()).select_from(Blob).where(Blob.deleting_since.is_(None)))
            == 2
        )


def test_an_empty_registry(tmp_path: Path, database: Database) -> None:
    findings = {f.check: f for f in disk_report(database, FilesystemDriver(tmp_path / "s")).findings()}

    assert findings["gc"].verdict == "OK" and findings["gc"].action == ""
    assert findings["projects"].summary == "the largest projects: none has content."
    assert "no project has a retention policy" in findings["retention"].summary
