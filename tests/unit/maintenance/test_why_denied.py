"""`dockyard doctor why-denied`: the explanation of a refused pull, push or delete, on real accounts,
projects and memberships in SQLite and PostgreSQL. The verdicts come from auth.policy.AccessPolicy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from dockyard.accounts.models import GroupRow, PersonalTokenRow, RobotRow, UserGroupRow, UserRow
from dockyard.config.settings import Settings
from dockyard.db.readonly import ReadOnlyFlag
from dockyard.db.session import Database
from dockyard.maintenance.doctor import Finding
from dockyard.maintenance.why_denied import explain_access
from dockyard.projects.models import ProjectMemberRow, ProjectRow, RobotPermissionRow

pytestmark = pytest.mark.db_independent  # the `database` fixture runs each test on both databases

NOW = dt.datetime.now(dt.UTC)


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate({"datadir": str(tmp_path / "data"), "auth": {"enabled": True}, **extra})


def _add(database: Database, table: Any, **values: Any) -> int:
    with database.write() as connection:
        result = connection.execute(insert(table).values(**values))
        key = result.inserted_primary_key
        return int(key[0]) if key and key[0] is not None else 0


@pytest.fixture
def team(database: Database) -> dict[str, int]:
    """Project team; alice a guest in it, bob a developer through group devs, carol no member."""
    ids = {"team": _add(database, ProjectRow, name="team", created_at=NOW, updated_at=NOW)}
    for name in ("alice", "bob", "carol"):
        ids[name] = _add(database, UserRow, username=name, created_at=NOW, updated_at=NOW)
    ids["devs"] = _add(database, GroupRow, name="devs", created_at=NOW)
    _add(database, UserGroupRow, user_id=ids["bob"], group_id=ids["devs"])
    _add(
        database, ProjectMemberRow, project_id=ids["team"], user_id=ids["alice"], role="guest", created_at=NOW
    )
    _add(
        database,
        ProjectMemberRow,
        project_id=ids["team"],
        group_id=ids["devs"],
        role="developer",
        created_at=NOW,
    )
    return ids


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.check: finding for finding in findings}


def test_a_guest_may_not_push_and_is_told_which_roles_may(
    tmp_path: Path, database: Database, team: dict[str, int]
) -> None:
    explanation = explain_access(database, _settings(tmp_path), "alice", "team/app", "push")

    assert not explanation.allowed
    permission = _by_check(explanation.findings)["permission"]
    assert permission.verdict == "FAIL"
    assert "alice's role in project team is guest, which does not include push" in permission.summary
    assert permission.summary.endswith("push needs one of the roles developer, maintainer, project_admin.")
    assert "dockyard member add team alice --role developer" in permission.action
    # She may pull: a guest's role includes it.
    assert explain_access(database, _settings(tmp_path), "alice", "team/app", "pull").allowed


def test_a_role_through_a_group_is_named(tmp_path: Path, database: Database, team: dict[str, int]) -> None:
    explanation = explain_access(database, _settings(tmp_path), "bob", "team/app", "push")

    assert explanation.allowed
    assert "role developer via group devs" in _by_check(explanation.findings)["permission"].summary


def test_no_membership(tmp_path: Path, database: Database, team: dict[str, int]) -> None:
    explanation = explain_access(database, _settings(tmp_path), "carol", "team/app", "pull")

    assert not explanation.allowed
    assert "carol is not a member of project team" in _by_check(explanation.findings)["permission"].summary


def test_a_disabled_user_and_expired_tokens(tmp_path: Path, database: Database, team: dict[str, int]) -> None:
    _add(database, UserRow, username="dave", disabled=True, created_at=NOW, updated_at=NOW)
    _add(
        database,
        PersonalTokenRow,
        user_id=team["bob"],
        name="laptop",
        secret_hash="0" * 64,
        hint="dy_0",
        created_at=NOW,
        expires_at=NOW - dt.timedelta(days=2),
    )

    dave = explain_access(database, _settings(tmp_path), "dave", "team/app", "push")
    bob = _by_check(explain_access(database, _settings(tmp_path), "bob", "team/app", "push").findings)

    assert not dave.allowed
    assert _by_check(dave.findings)["account"].summary == "the user dave is disabled."
    assert bob["tokens"].verdict == "WARN" and "laptop (expired" in bob["tokens"].summary


def test_robots_expired_or_without_the_action(
    tmp_path: Path, database: Database, team: dict[str, int]
) -> None:
    puller = _add(
        database, RobotRow, name="robot$team+ci", secret_hash="1" * 64, created_at=NOW, updated_at=NOW
    )
    _add(database, RobotPermissionRow, robot_id=puller, project_id=team["team"], actions="pull")
    _add(
        database,
        RobotRow,
        name="robot$team+old",
        secret_hash="2" * 64,
        expires_at=NOW - dt.timedelta(hours=1),
        created_at=NOW,
        updated_at=NOW,
    )

    ci = explain_access(database, _settings(tmp_path), "robot$team+ci", "team/app", "push")
    old = explain_access(database, _settings(tmp_path), "robot$team+old", "team/app", "pull")

    assert not ci.allowed
    assert "may only pull there: push needs its 'push' action" in _by_check(ci.findings)["permission"].summary
    assert not old.allowed and "expired" in _by_check(old.findings)["account"].summary


def test_a_full_quota_and_read_only_mode_refuse_a_permitted_push(
    tmp_path: Path, database: Database, team: dict[str, int]
) -> None:
    from sqlalchemy import update

    with database.write() as connection:
        connection.execute(
            update(ProjectRow)
            .where(ProjectRow.name == "team")
            .values(quota_limit_bytes=100, quota_used_bytes=100)
        )
    settings = _settings(tmp_path)
    ReadOnlyFlag.for_settings(settings).path.parent.mkdir(parents=True, exist_ok=True)
    ReadOnlyFlag.for_settings(settings).turn_on("migrating storage")

    explanation = explain_access(database, settings, "bob", "team/app", "push")

    findings = _by_check(explanation.findings)
    assert not explanation.allowed
    assert findings["permission"].verdict == "OK"  # the role allows it ...
    assert (
        findings["quota"].verdict == "FAIL" and "at its quota (100 of 100 bytes)" in findings["quota"].summary
    )
    assert findings["read-only"].verdict == "FAIL"  # ... what comes after refuses it
    # A pull is neither.
    assert explain_access(database, settings, "bob", "team/app", "pull").allowed


def test_a_missing_project_and_a_bad_name(tmp_path: Path, database: Database, team: dict[str, int]) -> None:
    missing = explain_access(database, _settings(tmp_path), "bob", "nowhere/app", "push")
    bad = explain_access(database, _settings(tmp_path), "bob", "Team/../App", "push")

    assert not missing.allowed and "does not exist" in _by_check(missing.findings)["permission"].summary
    assert not bad.allowed and _by_check(bad.findings)["repository"].verdict == "FAIL"


def test_auth_off_allows_everyone(tmp_path: Path, database: Database) -> None:
    settings = Settings.model_validate({"datadir": str(tmp_path / "data"), "auth": {"enabled": False}})

    assert explain_access(database, settings, "anyone", "team/app", "push").allowed
