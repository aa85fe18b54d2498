"""Webhooks: per-project webhook policies; the outbox and delivery log learn projects and attempts

Revision ID: 0007_webhook_policies
Revises: 0006_vulndb
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_webhook_policies"
down_revision = "0006_vulndb"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_policies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=True),
        sa.Column("headers_sealed", sa.Text(), nullable=True),
        sa.Column("header_names", sa.JSON(), nullable=False),
        sa.Column("skip_tls_verify", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_webhook_policies_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_policies")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_webhook_policies_project_id")),
    )
    with op.batch_alter_table("notification_events") as batch:
        batch.add_column(sa.Column("project", sa.String(length=255), nullable=True))
    op.create_index("ix_notification_events_project", "notification_events", ["project", "id"])
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.add_column(sa.Column("event", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.drop_column("attempt")
        batch.drop_column("event")
    op.drop_index("ix_notification_events_project", table_name="notification_events")
    with op.batch_alter_table("notification_events") as batch:
        batch.drop_column("project")
    op.drop_table("webhook_policies")
