"""Scanners: external scanners (Harbor pluggable scanner API adapters) scan jobs may use

Revision ID: 0014_scanners
Revises: 0013_replication
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_scanners"
down_revision = "0013_replication"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scanners",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("auth_kind", sa.String(length=8), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("registry_url", sa.String(length=2048), nullable=True),
        sa.Column("verify_tls", sa.Boolean(), nullable=False),
        sa.Column("request_timeout", sa.Float(), nullable=False),
        sa.Column("scan_timeout", sa.Float(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scanners")),
        sa.UniqueConstraint("name", name="uq_scanners_name"),
    )


def downgrade() -> None:
    op.drop_table("scanners")
