"""Pulls are audited as counts per (hour, manifest, principal) in `audit_pull_counts`, not one
`audit_events` row each

Revision ID: 0002_audit_pull_counts
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_audit_pull_counts"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The pull rows already in audit_events stay there: they are listed as before and age out with
    # audit.retention like every event.
    op.create_table(
        "audit_pull_counts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource_name", sa.String(length=512), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("pulls", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_pull_counts")),
        sa.UniqueConstraint("hour", "resource_name", "actor", "actor_kind", name="uq_audit_pull_counts_key"),
    )
    with op.batch_alter_table("audit_pull_counts", schema=None) as batch_op:
        batch_op.create_index("ix_audit_pull_counts_actor", ["actor", "hour"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_pull_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_pull_counts_actor")
    op.drop_table("audit_pull_counts")
