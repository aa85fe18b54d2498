"""Replication: artifact-type and label filters on policies

Revision ID: 0017_replication_filters
Revises: 0016_replication_resume
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_replication_filters"
down_revision = "0016_replication_resume"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replication_policies") as batch:
        batch.add_column(sa.Column("artifact_types", sa.Text(), nullable=True))
        batch.add_column(sa.Column("labels", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replication_policies") as batch:
        batch.drop_column("labels")
        batch.drop_column("artifact_types")
