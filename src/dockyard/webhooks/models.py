"""The notification tables: the outbox of events, each endpoint's delivery cursor and backoff, and the
delivery log. Events are appended in the request path and read by the `notify` job only."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from dockyard.db.base import Base, UTCDateTime, utcnow

_ID = BigInteger().with_variant(Integer(), "sqlite")
NAME_LENGTH = 100
ERROR_LENGTH = 1000


class NotificationEventRow(Base):
    """One event in registry:2's form (`payload`), waiting until every endpoint has passed it."""

    __tablename__ = "notification_events"
    __table_args__ = (Index("ix_notification_events_project", "project", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The project whose webhook policies may want the event (manifest and project events); None for
    # events only registry:2 endpoints are sent (blobs, mounts).
    project: Mapped[str | None] = mapped_column(String(255), nullable=True)


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
    event: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a webhook policy's event type
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)  # of that event, from 1


class WebhookPolicyRow(Base):
    """A project's webhook: which of its events go where, in which format. The secret (HMAC key) and
    the custom headers are sealed (webhooks/policies.py); only the headers' names are in clear."""

    __tablename__ = "webhook_policies"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    url: Mapped[str] = mapped_column(String(2048))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    events: Mapped[list[str]] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(16))
    secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    headers_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    header_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    skip_tls_verify: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
