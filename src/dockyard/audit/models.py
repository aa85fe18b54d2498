"""The audit log's one table. Append-only; old rows are purged by age (settings.audit.retention)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime

# Column widths; longer values are cut to fit when written (see services._row).
ACTOR_LENGTH = 255
KIND_LENGTH = 16
IP_LENGTH = 64  # the longest IPv6 text form is 45 characters; a zone id may follow
ACTION_LENGTH = 32
RESOURCE_TYPE_LENGTH = 32
RESOURCE_NAME_LENGTH = 512  # a repository name (255) with "@" and a digest (up to 160)

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
