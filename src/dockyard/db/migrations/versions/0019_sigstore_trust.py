"""Sigstore keyless verification: trusted roots (per project or system-wide) and identity policies

Revision ID: 0019_sigstore_trust
Revises: 0018_layer_file_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_sigstore_trust"
down_revision = "0018_layer_file_indexes"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sigstore_trust_roots",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_sigstore_trust_roots_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sigstore_trust_roots")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_sigstore_trust_roots_project_id")),
    )
    op.create_index(op.f("ix_sigstore_trust_roots_project_id"), "sigstore_trust_roots", ["project_id"])
    op.create_table(
        "sigstore_identities",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("issuer", sa.String(length=1024), nullable=False),
        sa.Column("san", sa.Text(), nullable=True),
        sa.Column("san_regex", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_sigstore_identities_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sigstore_identities")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_sigstore_identities_project_id")),
    )
    op.create_index(op.f("ix_sigstore_identities_project_id"), "sigstore_identities", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sigstore_identities_project_id"), table_name="sigstore_identities")
    op.drop_table("sigstore_identities")
    op.drop_index(op.f("ix_sigstore_trust_roots_project_id"), table_name="sigstore_trust_roots")
    op.drop_table("sigstore_trust_roots")
