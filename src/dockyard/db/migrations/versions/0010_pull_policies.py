"""Pull policies per project: require a verified signature; block vulnerabilities at or above a
severity; block unscanned artifacts

Revision ID: 0010_pull_policies
Revises: 0009_verdicts_per_repository
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_pull_policies"
down_revision = "0009_verdicts_per_repository"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("require_signature", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("block_severity", sa.String(length=16), nullable=False, server_default="none")
        )
        batch.add_column(
            sa.Column("block_unscanned", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("block_unscanned")
        batch.drop_column("block_severity")
        batch.drop_column("require_signature")
