"""Registry endpoints (`registry_endpoints`): remote registries by name, their credentials sealed

Revision ID: 0003_registry_endpoints
Revises: 0002_audit_pull_counts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_registry_endpoints"
down_revision = "0002_audit_pull_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_endpoints",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("auth_kind", sa.String(length=8), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("sealed_secret", sa.Text(), nullable=True),  # never the secret in the clear
        sa.Column("ca_pem", sa.Text(), nullable=True),
        sa.Column("verify_tls", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_endpoints")),
        sa.UniqueConstraint("name", name="uq_registry_endpoints_name"),
    )


def downgrade() -> None:
    op.drop_table("registry_endpoints")
