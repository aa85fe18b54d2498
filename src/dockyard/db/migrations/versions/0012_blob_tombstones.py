"""Blobs being garbage-collected carry a tombstone (`deleting_since`) until their bytes are gone

Revision ID: 0012_blob_tombstones
Revises: 0011_storage_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_blob_tombstones"
down_revision = "0011_storage_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("deleting_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("deleting_since")
