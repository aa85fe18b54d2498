"""Tables of retention: each project's policy, and the history of runs with their reports."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.projects import models as _projects  # noqa: F401  (project_id refers to it)

_ID = BigInteger().with_variant(Integer(), "sqlite")


class RetentionPolicyRow(Base):
    __tablename__ = "retention_policies"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # interfaces.Rule documents
    schedule: Mapped[str | None] = mapped_column(String(128), nullable=True)  # cron, UTC
    # When the schedule last started a run (None: not yet); the sweep fires the next cron time after it.
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RetentionRunRow(Base):
    """One evaluation of a project's policy: a dry run's report, or what a real run deleted."""

    __tablename__ = "retention_runs"
    __table_args__ = (Index("ix_retention_runs_project", "project_id", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # counts by outcome
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # RunReport.as_dict()
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
