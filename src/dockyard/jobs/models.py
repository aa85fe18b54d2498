"""The job queue's tables: jobs (one row per job, its whole life), their log lines, and schedules."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime

KIND_LENGTH = 64
STATUS_LENGTH = 16
OWNER_LENGTH = 200  # node:pid:thread:token of the worker holding the lease
CRON_LENGTH = 128
ORIGIN_LENGTH = 16

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint for a long-lived queue.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The claim query: queued jobs that are due, oldest first.
        Index("ix_jobs_status_run_after", "status", "run_after"),
        Index("ix_jobs_kind_status", "kind", "status"),
        Index("ix_jobs_finished_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    # The worker running the job holds a lease it renews; once it expires the job is claimed again.
    lease_owner: Mapped[str | None] = mapped_column(String(OWNER_LENGTH), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress_done: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retry_of: Mapped[int | None] = mapped_column(_ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobLogRow(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(_ID, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    line: Mapped[str] = mapped_column(Text)


class JobScheduleRow(Base):
    __tablename__ = "job_schedules"

    kind: Mapped[str] = mapped_column(String(KIND_LENGTH), primary_key=True)
    cron: Mapped[str] = mapped_column(String(CRON_LENGTH))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_job_id: Mapped[int | None] = mapped_column(_ID, nullable=True)
    # "default": made from the kind's default (and kept in step with the config); "api": an operator's.
    origin: Mapped[str] = mapped_column(String(ORIGIN_LENGTH), default="default")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
