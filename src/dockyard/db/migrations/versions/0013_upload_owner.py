"""Upload sessions remember who started them (`uploads.owner`), so only they may continue one

Revision ID: 0013_upload_owner
Revises: 0012_blob_tombstones
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_upload_owner"
down_revision = "0012_blob_tombstones"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions already open have no owner: with auth on, nobody may continue them (their clients
    # start again); with auth off none has one.
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("owner", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("owner")
