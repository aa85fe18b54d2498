"""Manifests remember when they were last pulled and, for an image, its platform

Revision ID: 0006_manifest_pull_time
Revises: 0005_repository_projects
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_manifest_pull_time"
down_revision = "0005_repository_projects"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("platform", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("platform")
        batch.drop_column("last_pulled_at")
