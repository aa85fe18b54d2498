"""Tables of projects: projects, their members (users or groups, with a role), robot permissions."""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.accounts import models as _accounts_models  # noqa: F401  (users, groups, robots tables)
from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.storage.models import DIGEST_LENGTH


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Storage quota (projects.quotas): NULL limit is unlimited; used is kept exact by the link and
    # unlink transactions, which change it under a lock on this row.
    quota_limit_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    quota_used_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    quota_warn_percent: Mapped[int] = mapped_column(Integer, default=80, server_default="80")
    # Pull policies (projects.pull_policies): checked on manifest GETs against cached verdicts.
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    block_severity: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    block_unscanned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ProjectMemberRow(Base):
    """A user or a group (exactly one) with a role in a project."""

    __tablename__ = "project_members"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id", name="uq_project_members_project_user"),
        UniqueConstraint("project_id", "group_id", name="uq_project_members_project_group"),
        CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="user_or_group"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RobotPermissionRow(Base):
    """What a robot may do in one project: a comma-separated list of pull, push, delete."""

    __tablename__ = "robot_permissions"

    robot_id: Mapped[int] = mapped_column(ForeignKey("robots.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    actions: Mapped[str] = mapped_column(String(64))


class ProjectBlobRow(Base):
    """Content counted once in a project's quota usage: a blob some repository of the project links,
    or a manifest some repository of the project holds (see projects.quotas)."""

    __tablename__ = "project_blobs"
    # The largest blob a project holds, from the index (projects.upload_room).
    __table_args__ = (Index("ix_project_blobs_project_id_size", "project_id", "size"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImmutableRuleRow(Base):
    """A tag immutability rule of a project (see projects.immutability)."""

    __tablename__ = "immutable_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    repository_pattern: Mapped[str] = mapped_column(String(255))
    repository_excluding: Mapped[bool] = mapped_column(Boolean, default=False)
    tag_pattern: Mapped[str] = mapped_column(String(255))
    tag_excluding: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
