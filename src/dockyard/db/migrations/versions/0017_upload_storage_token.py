"""Upload sessions record which saved writer state their size belongs to (`uploads.storage_token`),
where the storage driver cannot keep two writers of one upload apart (S3)

Revision ID: 0017_upload_storage_token
Revises: 0016_upload_project
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_upload_storage_token"
down_revision = "0016_upload_project"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions open across the upgrade have none: they resume unchecked, as before.
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("storage_token", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("storage_token")
