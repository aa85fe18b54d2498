"""`dockyard doctor why-denied USER REPOSITORY --action push`: why an account may not pull, push or delete.

The verdict on the permission comes from the authorization code itself (`auth.policy.AccessPolicy`, what
the token endpoint asks); this module never decides it. Around it, it reads the facts that explain the
answer in words: does the account exist, is it disabled or expired, which roles it holds in the project
(directly or through a group) or which actions a robot has there, and what refuses a write after the
permission (the read-only switch, a full quota).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from dockyard.accounts.models import GroupRow, PersonalTokenRow, RobotRow, UserGroupRow, UserRow
from dockyard.auth.interfaces import Principal, PrincipalKind
from dockyard.auth.policy import AccessPolicy
from dockyard.config.settings import Settings
from dockyard.content.reference import validate_name
from dockyard.db.readonly import ReadOnlyFlag
from dockyard.db.session import Database
from dockyard.errors import NameInvalid
from dockyard.maintenance.doctor import Finding
from dockyard.projects.models import ProjectMemberRow, ProjectRow, RobotPermissionRow
from dockyard.projects.rbac import REGISTRY_ACTIONS, ROBOT_ACTIONS, ROLE_PERMISSIONS, project_of

ROBOT_PREFIX = "robot$"


@dataclass(frozen=True)
class AccessExplanation:
    allowed: bool
    findings: list[Finding]


def explain_access(
    db: Database, settings: Settings, who: str, repository: str, action: str, now: datetime | None = None
) -> AccessExplanation:
    """Whether `who` may `action` (pull, push, delete) in `repository`, and why, in findings."""
    now = now or datetime.now(UTC)
    if action not in REGISTRY_ACTIONS:
        raise ValueError(f"unknown action {action!r}: expected one of {', '.join(REGISTRY_ACTIONS)}")
    mode = _external_auth(settings)
    if mode is not None:
        return AccessExplanation(False, [Finding("auth", "SKIP", mode)])
    if not settings.auth.enabled:
        summary = f"auth is off (auth.enabled: false): anyone who reaches the registry may {action}."
        return AccessExplanation(True, [Finding("auth", "OK", summary)])
    try:
        validate_name(repository)
    except NameInvalid:
        summary = f"{repository!r} is not a valid repository name: every request for it is refused."
        return AccessExplanation(False, [Finding("repository", "FAIL", summary)])
    project = project_of(repository)
    with db.read() as connection:
        findings = _account(connection, who, now)
        project_row = connection.execute(
            select(ProjectRow.name, ProjectRow.quota_used_bytes, ProjectRow.quota_limit_bytes).where(
                ProjectRow.name == project
            )
        ).first()
    robot = who.startswith(ROBOT_PREFIX)
    principal = Principal(PrincipalKind.ROBOT if robot else PrincipalKind.USER, who)
    policy = AccessPolicy(db)
    needed = REGISTRY_ACTIONS[action]
    permitted = policy.can(principal, project, needed)  # the real rules, as the token endpoint applies them
    if project_row is None:
        findings.append(_no_project(project, permitted))
    elif permitted:
        findings.append(
            Finding("permission", "OK", f"{who} has {needed} in project {project}{_via(db, who, project)}.")
        )
    elif not any(f.verdict == "FAIL" for f in findings):
        findings.append(_missing_permission(db, who, project, action))
    if permitted and action != "pull":
        findings += _write_blocks(settings, project_row, action)
    allowed = permitted and not any(f.verdict == "FAIL" for f in findings)
    return AccessExplanation(allowed, findings)


def _external_auth(settings: Settings) -> str | None:
    if settings.auth.htpasswd is not None:
        return "accounts are in an htpasswd file (auth.htpasswd): every valid login may do everything."
    if settings.auth.token.rootcertbundle is not None:
        return (
            "an external token issuer decides access (auth.token): ask it; dockyard only checks its tokens."
        )
    return None


def _account(connection: Connection, who: str, now: datetime) -> list[Finding]:
    if who.startswith(ROBOT_PREFIX):
        robot = connection.execute(
            select(RobotRow.disabled, RobotRow.expires_at).where(RobotRow.name == who)
        ).first()
        if robot is None:
            return [
                Finding(
                    "account",
                    "FAIL",
                    f"there is no robot account named {who}.",
                    "check the name (`dockyard robot list`).",
                )
            ]
        if robot.disabled:
            return [
                Finding("account", "FAIL", f"the robot {who} is disabled.", f"`dockyard robot enable {who}`.")
            ]
        if robot.expires_at is not None and _aware(robot.expires_at) <= now:
            return [
                Finding(
                    "account",
                    "FAIL",
                    f"the robot {who} expired on {robot.expires_at:%Y-%m-%d %H:%M} UTC.",
                    "refresh its secret with a new expiry (`dockyard robot refresh`).",
                )
            ]
        return [Finding("account", "OK", f"the robot {who} is enabled and not expired.")]
    user = connection.execute(
        select(UserRow.id, UserRow.disabled, UserRow.admin, UserRow.directory_admin).where(
            UserRow.username == who
        )
    ).first()
    if user is None:
        return [
            Finding(
                "account",
                "FAIL",
                f"there is no user named {who} (LDAP users appear after their first login).",
                "check the name (`dockyard user list`).",
            )
        ]
    if user.disabled:
        return [Finding("account", "FAIL", f"the user {who} is disabled.", f"`dockyard user enable {who}`.")]
    admin = " and a system administrator" if user.admin or user.directory_admin else ""
    findings = [Finding("account", "OK", f"the user {who} is enabled{admin}.")]
    expired = connection.execute(
        select(PersonalTokenRow.name, PersonalTokenRow.expires_at)
        .where(PersonalTokenRow.user_id == user.id, PersonalTokenRow.expires_at.is_not(None))
        .order_by(PersonalTokenRow.name)
    ).all()
    gone = [(name, at) for name, at in expired if at is not None and _aware(at) <= now]
    if gone:
        names = ", ".join(f"{name} (expired {at:%Y-%m-%d})" for name, at in gone[:5])
        findings.append(
            Finding(
                "tokens",
                "WARN",
                f"{len(gone)} of {who}'s access tokens expired: {names}; a login with one is refused (401).",
                "create a new token (`dockyard token create`) and log in with it.",
            )
        )
    return findings


def _no_project(project: str, permitted: bool) -> Finding:
    if permitted:  # a system administrator's push creates it
        return Finding(
            "permission", "OK", f"project {project} does not exist; an administrator's push creates it."
        )
    return Finding(
        "permission",
        "FAIL",
        f"project {project} does not exist: only a system administrator's push creates one.",
        f"create it first (`dockyard project create {project}`).",
    )


def _via(db: Database, who: str, project: str) -> str:
    if who.startswith(ROBOT_PREFIX):
        actions = _robot_actions(db, who, project)
        return f" (robot permission: {actions})" if actions else ""
    roles = _user_roles(db, who, project)
    if not roles:
        return " (a system administrator, or the project is public)"
    return " (" + ", ".join(f"role {role}{via}" for role, via in roles) + ")"


def _missing_permission(db: Database, who: str, project: str, action: str) -> Finding:
    needed = REGISTRY_ACTIONS[action]
    if who.startswith(ROBOT_PREFIX):
        actions = _robot_actions(db, who, project)
        has = f"may only {actions} there" if actions else "has no permission in it"
        return Finding(
            "permission",
            "FAIL",
            f"the robot {who} {has}: {action} needs its {action!r} action in project {project}.",
            f"grant the robot the {action!r} action on {project} (its permissions, in the web UI or the "
            "management API).",
        )
    roles = _user_roles(db, who, project)
    enough = ", ".join(role.value for role, granted in ROLE_PERMISSIONS.items() if needed in granted)
    if not roles:
        summary = f"{who} is not a member of project {project}, directly or through a group"
    else:
        held = ", ".join(f"{role}{via}" for role, via in roles)
        summary = f"{who}'s role in project {project} is {held}, which does not include {needed}"
    return Finding(
        "permission",
        "FAIL",
        f"{summary}: {action} needs one of the roles {enough}.",
        f"a project admin gives {who} such a role: `dockyard member add {project} {who} --role developer`.",
    )


def _user_roles(db: Database, who: str, project: str) -> list[tuple[str, str]]:
    """(role, " via group G" or "") for each membership of the user in the project."""
    with db.read() as connection:
        user_id = connection.scalar(select(UserRow.id).where(UserRow.username == who))
        if user_id is None:
            return []
        groups = select(UserGroupRow.group_id).where(UserGroupRow.user_id == user_id)
        rows = connection.execute(
            select(ProjectMemberRow.role, GroupRow.name)
            .join(ProjectRow, ProjectRow.id == ProjectMemberRow.project_id)
            .outerjoin(GroupRow, GroupRow.id == ProjectMemberRow.group_id)
            .where(
                ProjectRow.name == project,
                or_(ProjectMemberRow.user_id == user_id, ProjectMemberRow.group_id.in_(groups)),
            )
            .order_by(ProjectMemberRow.role)
        ).all()
    return [(role, f" via group {group}" if group else "") for role, group in rows]


def _robot_actions(db: Database, who: str, project: str) -> str:
    with db.read() as connection:
        actions = connection.scalar(
            select(RobotPermissionRow.actions)
            .join(RobotRow, RobotRow.id == RobotPermissionRow.robot_id)
            .join(ProjectRow, ProjectRow.id == RobotPermissionRow.project_id)
            .where(RobotRow.name == who, ProjectRow.name == project)
        )
    known = [name for name in (actions or "").split(",") if name in ROBOT_ACTIONS]
    return ",".join(known)


def _write_blocks(settings: Settings, project: Any, action: str) -> list[Finding]:
    """What refuses a permitted push or delete: the read-only switch, then a full quota. `project`: its
    (name, quota_used_bytes, quota_limit_bytes) row, or None."""
    findings = []
    if settings.storage.maintenance.readonly.enabled or ReadOnlyFlag.for_settings(settings).is_on():
        findings.append(
            Finding(
                "read-only",
                "FAIL",
                "the registry is in read-only maintenance mode: pushes and deletes answer 405 UNSUPPORTED.",
                "`dockyard read-only off` when the maintenance is over (or storage.maintenance.readonly).",
            )
        )
    if action == "push" and project is not None and project.quota_limit_bytes is not None:
        used, limit = project.quota_used_bytes, project.quota_limit_bytes
        if used >= limit:
            findings.append(
                Finding(
                    "quota",
                    "FAIL",
                    f"project {project.name} is at its quota ({used} of {limit} bytes): new content is "
                    "refused (403 DENIED, quota exceeded).",
                    "raise the quota (`dockyard project quota`) or delete images and run garbage collection.",
                )
            )
    return findings


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
