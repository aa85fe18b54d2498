"""Storage quotas at the projects layer: charges, releases, early checks, warnings, gauges.
Runs on SQLite, and on PostgreSQL in the DOCKYARD_TEST_DB=postgresql pass."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from dockyard.audit.interfaces import AuditAction
from dockyard.audit.services import CollectingRecorder
from dockyard.db.session import Database
from dockyard.projects.interfaces import InvalidQuota, ProjectNotFound, QuotaExceeded
from dockyard.projects.models import ProjectBlobRow
from dockyard.projects.quotas import Quotas, exposition, human, lock_project, uncount
from dockyard.projects.services import ProjectService

MiB = 1024 * 1024


@pytest.fixture
def project_id(db: Database) -> int:
    return ProjectService(db).create("team").id


def _charge(quotas: Quotas, db: Database, project_id: int, digest: str, size: int) -> int:
    with db.write() as connection:
        return quotas.charge(connection, project_id, digest, size)


def test_each_digest_counts_once_and_the_limit_holds(db: Database, project_id: int) -> None:
    quotas = Quotas(db)
    assert quotas.get("team").limit_bytes is None
    quotas.set("team", 10 * MiB)
    assert _charge(quotas, db, project_id, "sha256:a", 6 * MiB) == 6 * MiB
    assert _charge(quotas, db, project_id, "sha256:a", 6 * MiB) == 0  # counted already
    with pytest.raises(QuotaExceeded) as refused:
        _charge(quotas, db, project_id, "sha256:b", 5 * MiB)
    assert refused.value.message == (
        "quota of project team exceeded: used 6 MiB, limit 10 MiB, this blob 5 MiB"
    )
    assert _charge(quotas, db, project_id, "sha256:c", 4 * MiB) == 4 * MiB  # exactly to the limit
    quota = quotas.get("team")
    assert (quota.used_bytes, quota.limit_bytes) == (10 * MiB, 10 * MiB)
    with db.read() as connection:  # the refused blob left nothing behind
        counted = set(connection.scalars(select(ProjectBlobRow.digest)))
    assert counted == {"sha256:a", "sha256:c"}


def test_uncount_frees_usage(db: Database, project_id: int) -> None:
    quotas = Quotas(db)
    _charge(quotas, db, project_id, "sha256:a", 100)
    _charge(quotas, db, project_id, "sha256:b", 50)
    with db.write() as connection:
        lock_project(connection, project_id)
        assert uncount(connection, project_id, ["sha256:a", "sha256:unknown"]) == 100
    assert quotas.get("team").used_bytes == 50


def test_early_check(db: Database, project_id: int) -> None:
    quotas = Quotas(db)
    quotas.check_room("nowhere/app", 10**15)  # a project a push would create: unlimited
    quotas.set("team", 1000)
    _charge(quotas, db, project_id, "sha256:a", 600)
    quotas.check_room("team/app", 400)
    with pytest.raises(QuotaExceeded, match="used 600 B, limit 1000 B, this blob 401 B"):
        quotas.check_room("team/app", 401)
    quotas.check_room("team/app", 600, "sha256:a")  # already counted: costs nothing


def test_limit_validation(db: Database, project_id: int) -> None:
    quotas = Quotas(db)
    with pytest.raises(InvalidQuota):
        quotas.set("team", -1)
    with pytest.raises(InvalidQuota):
        quotas.set("team", 10, warn_percent=0)
    with pytest.raises(ProjectNotFound):
        quotas.set("nope", 10)
    quotas.set("team", 10, warn_percent=50)
    assert quotas.get("team").warn_percent == 50
    quotas.set("team", None)
    assert quotas.get("team").limit_bytes is None


def test_warning_when_passing_the_threshold_and_again_after_dropping_below(
    db: Database, project_id: int
) -> None:
    audit = CollectingRecorder()
    quotas = Quotas(db, audit)
    quotas.set("team", 1000)  # warns at 800
    _charge(quotas, db, project_id, "sha256:a", 700)
    assert audit.events == []
    _charge(quotas, db, project_id, "sha256:b", 150)  # 850: passes 800
    _charge(quotas, db, project_id, "sha256:c", 10)  # already past: no second warning
    warnings = [event for event in audit.events if event.action == AuditAction.QUOTA_WARNING]
    assert len(warnings) == 1
    assert warnings[0].resource_name == "team"
    assert warnings[0].detail is not None and warnings[0].detail["used_bytes"] == 850
    with db.write() as connection:
        lock_project(connection, project_id)
        uncount(connection, project_id, ["sha256:b", "sha256:c"])  # 700
    _charge(quotas, db, project_id, "sha256:d", 100)  # 800 again
    assert len([e for e in audit.events if e.action == AuditAction.QUOTA_WARNING]) == 2


def test_concurrent_charges_never_pass_the_limit(db: Database, project_id: int) -> None:
    quotas = Quotas(db)
    quotas.set("team", 10 * MiB)
    accepted: list[int] = []
    refused: list[int] = []

    def push(index: int) -> None:
        size = MiB + index * 1000  # distinct sizes, so the sum says which ones were accepted
        try:
            _charge(quotas, db, project_id, f"sha256:{index:064x}", size)
            accepted.append(size)
        except QuotaExceeded:
            refused.append(size)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = quotas.get("team").used_bytes
    assert used == sum(accepted) <= 10 * MiB
    assert len(accepted) == 9 and len(refused) == 15  # 9 fit; a tenth would not


def test_pushes_into_new_repositories_of_one_project_do_not_deadlock(db: Database, project_id: int) -> None:
    """Each push inserts a row that refers to the project (its repository: a KEY SHARE lock on
    PostgreSQL) before the quota locks the project's row; two such pushes at once deadlocked while
    that lock was FOR UPDATE. SQLite serialises writers, so there the two simply run in turn."""
    quotas = Quotas(db)
    concurrent = db.engine.dialect.name == "postgresql"
    both_inserted = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    def push(index: int) -> None:
        try:
            with db.write() as connection:
                connection.execute(
                    text("INSERT INTO repositories (name, project_id, created_at) VALUES (:n, :p, :t)"),
                    {"n": f"team/app{index}", "p": project_id, "t": datetime.now(UTC)},
                )
                if concurrent:
                    both_inserted.wait()
                quotas.charge(connection, project_id, f"sha256:{index:064x}", MiB)
            outcomes.append("pushed")
        except Exception as exc:  # the outcome is what the test checks
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["pushed", "pushed"]
    assert quotas.get("team").used_bytes == 2 * MiB


def test_gauges_and_human_sizes(db: Database, project_id: int) -> None:
    quotas = Quotas(db)
    quotas.set("team", 2 * MiB)
    ProjectService(db).create("open")
    _charge(quotas, db, project_id, "sha256:a", 1234)
    text = exposition(quotas.all()).decode()
    assert 'dockyard_project_quota_used_bytes{project="team"} 1234' in text
    assert f'dockyard_project_quota_limit_bytes{{project="team"}} {2 * MiB}' in text
    assert 'dockyard_project_quota_used_bytes{project="open"} 0' in text
    assert 'limit_bytes{project="open"}' not in text  # unlimited: no limit gauge
    assert [human(n) for n in (0, 512, 1536, 10 * MiB, 3 * 1024**4)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "10 MiB",
        "3 TiB",
    ]
