"""Proxy projects (pull-through cache): which project proxies which endpoint, and each cached tag's state

Revision ID: 0005_proxy_projects
Revises: 0004_notifications
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_proxy_projects"
down_revision = "0004_notifications"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "proxy_projects",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("endpoint_id", _ID, nullable=False),
        sa.Column("tag_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["registry_endpoints.id"],
            name=op.f("fk_proxy_projects_endpoint_id_registry_endpoints"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_proxy_projects_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_proxy_projects")),
    )
    with op.batch_alter_table("proxy_projects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_proxy_projects_endpoint_id"), ["endpoint_id"], unique=False)
    op.create_table(
        "proxy_tags",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("upstream_digest", sa.String(length=160), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_proxy_tags_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "tag", name=op.f("pk_proxy_tags")),
    )


def downgrade() -> None:
    op.drop_table("proxy_tags")
    with op.batch_alter_table("proxy_projects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proxy_projects_endpoint_id"))
    op.drop_table("proxy_projects")
