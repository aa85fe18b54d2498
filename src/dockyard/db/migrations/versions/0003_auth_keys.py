"""token signing keys

Revision ID: 0003_auth_keys
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_auth_keys"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_auth_signing_keys")),
    )
    with op.batch_alter_table("auth_signing_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_signing_keys_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_signing_keys_created_at"))
    op.drop_table("auth_signing_keys")
