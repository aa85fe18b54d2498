"""The notification tables: the outbox of events, each endpoint's delivery cursor and backoff, and the
delivery log. Events are appended in the request path and read by the `notify` job only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")
NAME_LENGTH = 100
ERROR_LENGTH = 1000


class NotificationEventRow(Base):
    """One event in registry:2's form (`payload`), waiting until every endpoint has passed it."""

    __tablename__ = "notification_events"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class NotificationCursorRow(Base):
    """How far an endpoint got: every event up to `last_event_id` was delivered (or ignored)."""

    __tablename__ = "notification_cursors"

    endpoint: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(_ID, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive
    retry_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class NotificationDeliveryRow(Base):
    """One request to an endpoint: what it carried and how it went."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_endpoint", "endpoint", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(NAME_LENGTH))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    events: Mapped[int] = mapped_column(Integer)
    first_event_id: Mapped[int] = mapped_column(_ID)
    last_event_id: Mapped[int] = mapped_column(_ID)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: no answer
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
