"""Tables of replication: the policies, and the history of runs with each artifact's outcome."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, UTCDateTime, utcnow
from dockyard.endpoints import models as _endpoint_models  # noqa: F401  (registry_endpoints)
from dockyard.storage.models import DIGEST_LENGTH

_ID = BigInteger().with_variant(Integer(), "sqlite")


class ReplicationPolicyRow(Base):
    """A policy (interfaces.Policy). The endpoint it uses cannot be deleted while it exists."""

    __tablename__ = "replication_policies"
    __table_args__ = (UniqueConstraint("name", name="uq_replication_policies_name"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    direction: Mapped[str] = mapped_column(String(8))  # push | pull
    endpoint_id: Mapped[int] = mapped_column(
        _ID, ForeignKey("registry_endpoints.id", ondelete="RESTRICT"), index=True
    )
    repositories: Mapped[str] = mapped_column(String(255))  # doublestar glob
    tags: Mapped[str] = mapped_column(String(255))  # doublestar glob
    dest_namespace: Mapped[str | None] = mapped_column(String(128), nullable=True)
    trigger: Mapped[str] = mapped_column(String(8))  # manual | cron | event
    schedule: Mapped[str | None] = mapped_column(String(128), nullable=True)  # cron, UTC
    # When the schedule (or an event) last queued a run; the sweep fires the next cron time after it.
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    override: Mapped[bool] = mapped_column(Boolean, default=True)
    propagate_deletes: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    concurrency: Mapped[int] = mapped_column(Integer, default=8)  # artifacts a run copies at once
    bandwidth: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes/s; NULL: no limit
    artifact_types: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list; NULL: any type
    labels: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of key=value globs
    # Blob copies cut off midway, to continue: JSON {"repository@digest": upload id or URL} (pending.py).
    pending_uploads: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReplicationRunRow(Base):
    """One execution of a policy (one attempt of its `replicate` job), with its counters."""

    __tablename__ = "replication_runs"
    __table_args__ = (Index("ix_replication_runs_policy", "policy_id", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    policy_id: Mapped[int] = mapped_column(_ID, ForeignKey("replication_policies.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    trigger: Mapped[str] = mapped_column(String(8))  # manual | cron | event
    status: Mapped[str] = mapped_column(String(16))  # interfaces.RunStatus
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    artifacts_copied: Mapped[int] = mapped_column(Integer, default=0)
    artifacts_skipped: Mapped[int] = mapped_column(Integer, default=0)
    artifacts_failed: Mapped[int] = mapped_column(Integer, default=0)
    artifacts_deleted: Mapped[int] = mapped_column(Integer, default=0)
    blobs_copied: Mapped[int] = mapped_column(Integer, default=0)
    blobs_mounted: Mapped[int] = mapped_column(Integer, default=0)
    blobs_skipped: Mapped[int] = mapped_column(Integer, default=0)
    manifests_copied: Mapped[int] = mapped_column(Integer, default=0)
    bytes_copied: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReplicationArtifactRow(Base):
    """What a run did with one tag of the source."""

    __tablename__ = "replication_run_artifacts"
    __table_args__ = (Index("ix_replication_run_artifacts_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(_ID, ForeignKey("replication_runs.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(512))  # repository:tag on the source
    destination: Mapped[str] = mapped_column(String(512))  # repository:tag on the destination
    digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # interfaces.ArtifactStatus
    blobs: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
