"""Replication resumes blobs: a policy's pending uploads (blob copies cut off midway, to continue)

Revision ID: 0016_replication_resume
Revises: 0015_scan_scanner
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_replication_resume"
down_revision = "0015_scan_scanner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replication_policies") as batch:
        batch.add_column(sa.Column("pending_uploads", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replication_policies") as batch:
        batch.drop_column("pending_uploads")
