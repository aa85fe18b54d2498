"""Signature verdicts per repository: signatures count in the repository they are in

The verdict cache of 0008 was keyed by project and digest, so two repositories of a project holding
the same digest, one signed and one not, overwrote each other's verdict. It is a cache: the table is
made again, empty, keyed by repository and digest.

Revision ID: 0009_verdicts_per_repository
Revises: 0008_signatures
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_verdicts_per_repository"
down_revision = "0008_signatures"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("keyset_version", _ID, nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("key_name", sa.String(length=128), nullable=True),
        sa.Column("signature", sa.String(length=160), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("checked_at", _TIME, nullable=False),
    ]


def upgrade() -> None:
    op.drop_table("signature_verdicts")
    op.create_table(
        "signature_verdicts",
        sa.Column("repository_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        *_columns(),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_signature_verdicts_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_signature_verdicts_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest", name=op.f("pk_signature_verdicts")),
    )
    op.create_index(op.f("ix_signature_verdicts_project_id"), "signature_verdicts", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_signature_verdicts_project_id"), table_name="signature_verdicts")
    op.drop_table("signature_verdicts")
    op.create_table(
        "signature_verdicts",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        *_columns(),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_signature_verdicts_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "digest", name=op.f("pk_signature_verdicts")),
    )
