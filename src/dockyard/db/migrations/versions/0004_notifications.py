"""Notifications: the event outbox, each endpoint's cursor and backoff, the delivery log

Revision ID: 0004_notifications
Revises: 0003_registry_endpoints
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_notifications"
down_revision = "0003_registry_endpoints"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notification_cursors",
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("last_event_id", _ID, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_notification_cursors")),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("first_event_id", _ID, nullable=False),
        sa.Column("last_event_id", _ID, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    op.create_index("ix_notification_deliveries_endpoint", "notification_deliveries", ["endpoint", "id"])
    op.create_table(
        "notification_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_events")),
    )


def downgrade() -> None:
    op.drop_table("notification_events")
    op.drop_index("ix_notification_deliveries_endpoint", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_cursors")
