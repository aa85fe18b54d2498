"""Blobs remember when a manifest that referenced them was last deleted (garbage collection's window)

Revision ID: 0008_gc
Revises: 0006_manifest_pull_time
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_gc"
down_revision = "0006_manifest_pull_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("unreferenced_at", sa.DateTime(timezone=True), nullable=True))
    # The collector's candidate scan reads blobs by age.
    op.create_index("ix_blobs_created_at", "blobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_blobs_created_at", table_name="blobs")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("unreferenced_at")
