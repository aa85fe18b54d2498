"""Layer file indexes: the layer browser's cache of a layer blob's entries

Revision ID: 0018_layer_file_indexes
Revises: 0017_replication_filters
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_layer_file_indexes"
down_revision = "0017_replication_filters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "layer_file_indexes",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("with_digests", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["blobs.digest"],
            name=op.f("fk_layer_file_indexes_digest_blobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_layer_file_indexes")),
    )


def downgrade() -> None:
    op.drop_table("layer_file_indexes")
