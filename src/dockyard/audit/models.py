"""The audit log's tables: single events, and pulls counted per hour. Both are purged by age
(settings.audit.retention)."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime

# Column widths; longer values are cut to fit when written (clean_text).
ACTOR_LENGTH = 255
KIND_LENGTH = 16
IP_LENGTH = 64  # the longest IPv6 text form is 45 characters; a zone id may follow
ACTION_LENGTH = 32
RESOURCE_TYPE_LENGTH = 32
RESOURCE_NAME_LENGTH = 512  # a repository name (255) with "@" and a digest (up to 160)


def clean_text(value: str | None, length: int) -> str | None:
    """`value` as a column of `length` takes it: PostgreSQL refuses NUL in text, and values longer than
    the column; neither may block a batch of audit writes."""
    return None if value is None else value.replace("\x00", "")[:length]


# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint for a long-lived log.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_resource", "resource_type", "resource_name"),
        Index("ix_audit_events_actor", "actor", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    actor_kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    client_ip: Mapped[str | None] = mapped_column(String(IP_LENGTH), nullable=True)
    action: Mapped[str] = mapped_column(String(ACTION_LENGTH))
    resource_type: Mapped[str | None] = mapped_column(String(RESOURCE_TYPE_LENGTH), nullable=True)
    resource_name: Mapped[str | None] = mapped_column(String(RESOURCE_NAME_LENGTH), nullable=True)
    result: Mapped[str] = mapped_column(String(KIND_LENGTH))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AuditPullCountRow(Base):
    """How often one principal pulled one manifest in one hour (audit.pulls: counted).

    A pull is a manifest GET, by tag or by digest; it is counted under the digest it resolved to.
    Each worker process adds its pulls in batches (audit.pull_counts.PullCounter), so this table
    grows with the distinct (hour, manifest, principal) combinations, not with the pulls.
    """

    __tablename__ = "audit_pull_counts"
    __table_args__ = (
        # What a batch's INSERT ... ON CONFLICT adds to; its first column serves the purge by age.
        UniqueConstraint("hour", "resource_name", "actor", "actor_kind", name="uq_audit_pull_counts_key"),
        Index("ix_audit_pull_counts_actor", "actor", "hour"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime)  # the start of the hour counted
    resource_name: Mapped[str] = mapped_column(String(RESOURCE_NAME_LENGTH))  # "team/app@sha256:..."
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    actor_kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    # The address of the latest batch's pull: one of them, when several addresses pulled in the hour.
    client_ip: Mapped[str | None] = mapped_column(String(IP_LENGTH), nullable=True)
    pulls: Mapped[int] = mapped_column(BigInteger)
