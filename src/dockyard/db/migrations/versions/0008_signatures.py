"""Signatures: trusted public keys per project, the key-set versions, cached verdicts

Revision ID: 0008_signatures
Revises: 0007_webhook_policies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_signatures"
down_revision = "0007_webhook_policies"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trusted_keys",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_trusted_keys_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_keys")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_trusted_keys_project_id")),
    )
    op.create_index(op.f("ix_trusted_keys_project_id"), "trusted_keys", ["project_id"])
    op.create_table(
        "trust_keysets",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_trust_keysets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_trust_keysets")),
    )
    op.create_table(
        "signature_verdicts",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("keyset_version", _ID, nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("key_name", sa.String(length=128), nullable=True),
        sa.Column("signature", sa.String(length=160), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("checked_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_signature_verdicts_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "digest", name=op.f("pk_signature_verdicts")),
    )


def downgrade() -> None:
    op.drop_table("signature_verdicts")
    op.drop_table("trust_keysets")
    op.drop_index(op.f("ix_trusted_keys_project_id"), table_name="trusted_keys")
    op.drop_table("trusted_keys")
