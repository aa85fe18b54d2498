"""Notation trust policies per project, and the named trust store of each trusted certificate

Revision ID: 0012_notation_trust_policies
Revises: 0011_scans
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_notation_trust_policies"
down_revision = "0011_scans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trusted_keys") as batch:
        batch.add_column(sa.Column("trust_store", sa.String(length=128), nullable=True))
    op.create_table(
        "notation_trust_policies",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_notation_trust_policies_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_notation_trust_policies")),
    )


def downgrade() -> None:
    op.drop_table("notation_trust_policies")
    with op.batch_alter_table("trusted_keys") as batch:
        batch.drop_column("trust_store")
