"""Storage quotas at the projects layer: charges, releases, early checks, warnings, gauges.
Runs on SQLite, and on PostgreSQL in the DOCKYARD_TEST_DB=postgresql pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from dockyard.audit.interfaces import AuditAction
from dockyard.audit.services import CollectingRecorder
from dockyard.coordination.caches import GenerationCache
from dockyard.coordination.feeds import LocalChangeFeed
from dockyard.coordination.interfaces import ChangeFeed, Topic, generation_of
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
        quotas.check_room("team/app", 401, "sha256:b")
    quotas.check_room("team/app", 600, "sha256:a")  # already counted: costs nothing


def test_early_check_without_a_digest_refuses_only_what_cannot_be_held_content(
    db: Database, project_id: int
) -> None:
    """A chunk of an upload whose digest comes at the end (PATCH): at a full project it may still be
    a re-upload of content the project counts, which costs nothing, unless it is already bigger than
    every blob the project counts."""
    quotas = Quotas(db)
    _charge(quotas, db, project_id, "sha256:big", 700)
    _charge(quotas, db, project_id, "sha256:small", 300)
    quotas.set("team", 1000)  # full
    quotas.check_room("team/app", 700)  # could be sha256:big again
    with pytest.raises(QuotaExceeded, match="used 1000 B, limit 1000 B, this blob 701 B"):
        quotas.check_room("team/app", 701)
    with pytest.raises(QuotaExceeded):  # with the digest known the answer is exact
        quotas.check_room("team/app", 300, "sha256:new")
    quotas.check_room("team/app", 300, "sha256:small")


@contextmanager
def _counting_statements(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)  # transaction control (BEGIN) too
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def _queries(statements: list[str]) -> list[str]:
    return [statement for statement in statements if statement.split()[0].upper() != "BEGIN"]


def _worker_quotas(db: Database, feed: ChangeFeed) -> Quotas:
    """Quotas as one worker process has them: its own cache, the node's change feed."""
    return Quotas(
        db,
        limits=GenerationCache(generation_of(feed, Topic.POLICIES)),
        on_change=lambda: feed.bump(Topic.POLICIES),
    )


def test_early_check_of_an_unlimited_project_makes_no_query_once_warm(
    db: Database, project_id: int, tmp_path: Path
) -> None:
    quotas = _worker_quotas(db, LocalChangeFeed(tmp_path / "changes"))
    with _counting_statements(db) as statements:
        quotas.check_room("team/app", 10**12)
        quotas.check_room("nowhere/app", 10**12)  # a project a push would create
    assert len(_queries(statements)) == 2  # one read each, to learn the limit
    with _counting_statements(db) as statements:
        for _ in range(100):
            quotas.check_room("team/app", 10**12)
            quotas.check_room("team/other", MiB, "sha256:a")
            quotas.check_room("nowhere/app", 10**12)
    assert statements == []
    quotas.set("team", 1000)
    with _counting_statements(db) as statements:
        quotas.check_room("team/app", 1000)
        quotas.check_room("team/app", 1000)
    assert len(_queries(statements)) == 2  # a project with a limit reads its usage every time


def test_a_limit_set_by_one_worker_holds_at_once_in_the_others(
    db: Database, project_id: int, tmp_path: Path
) -> None:
    feed = LocalChangeFeed(tmp_path / "changes")
    first, second = _worker_quotas(db, feed), _worker_quotas(db, LocalChangeFeed(tmp_path / "changes"))
    first.check_room("team/app", MiB)  # cached: unlimited
    second.set("team", 1000)
    with pytest.raises(QuotaExceeded):
        first.check_room("team/app", MiB)
    second.set("team", None)
    first.check_room("team/app", MiB)
    # A deleted project may come back under its name, without the limit it had.
    second.set("team", 1000)
    with pytest.raises(QuotaExceeded):
        first.check_room("team/app", MiB)
    ProjectService(db, on_delete=lambda: feed.bump(Topic.POLICIES)).delete("team")
    ProjectService(db).create("team")
    first.check_room("team/app", MiB)


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
