"""Which scanner made each stored scan's result

Revision ID: 0015_scan_scanner
Revises: 0014_scanners
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_scan_scanner"
down_revision = "0014_scanners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("scanner", sa.String(length=64), nullable=True))
    # Scans stored before this stay null: which scanner made them was not recorded, and is not guessed.


def downgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("scanner")
