"""OpenID Connect: users bound to the provider's subject, their CLI secret, logins under way

Revision ID: 0020_oidc
Revises: 0019_sigstore_trust
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_oidc"
down_revision = "0019_sigstore_trust"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("cli_secret_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "oidc_login_states",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("next_path", sa.String(length=2048), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_login_states")),
    )
    op.create_index(op.f("ix_oidc_login_states_expires_at"), "oidc_login_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_oidc_login_states_expires_at"), table_name="oidc_login_states")
    op.drop_table("oidc_login_states")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("cli_secret_hash")
        batch.drop_column("oidc_subject")
