"""Project policies: storage quotas (limit, usage, warning threshold; content counted per project)
and tag immutability rules. Usage is backfilled from the links and manifests already there.

Revision ID: 0009_project_policies
Revises: 0006_manifest_pull_time
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009_project_policies"
down_revision = "0006_manifest_pull_time"
branch_labels = None
depends_on = None

DIGEST_LENGTH = 160


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("quota_limit_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("quota_used_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("quota_warn_percent", sa.Integer(), nullable=False, server_default="80"))
    op.create_table(
        "project_blobs",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(DIGEST_LENGTH), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_project_blobs_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "digest", name="pk_project_blobs"),
    )
    op.create_index("ix_project_blobs_digest", "project_blobs", ["digest"])
    op.create_table(
        "immutable_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("repository_pattern", sa.String(255), nullable=False),
        sa.Column("repository_excluding", sa.Boolean(), nullable=False),
        sa.Column("tag_pattern", sa.String(255), nullable=False),
        sa.Column("tag_excluding", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_immutable_rules_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_immutable_rules"),
    )
    op.create_index("ix_immutable_rules_project_id", "immutable_rules", ["project_id"])
    _backfill_usage()


def _backfill_usage() -> None:
    """Every distinct blob linked into, or manifest held by, a repository of a project counts once."""
    connection = op.get_bind()
    now = datetime.now(UTC)
    connection.execute(
        sa.text(
            "INSERT INTO project_blobs (project_id, digest, size, created_at) "
            "SELECT r.project_id, b.digest, MAX(b.size), :now FROM repository_blobs rb "
            "JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest "
            "WHERE r.project_id IS NOT NULL GROUP BY r.project_id, b.digest"
        ),
        {"now": now},
    )
    connection.execute(
        sa.text(
            "INSERT INTO project_blobs (project_id, digest, size, created_at) "
            "SELECT r.project_id, m.digest, MAX(m.size), :now FROM manifests m "
            "JOIN repositories r ON r.id = m.repository_id "
            "WHERE r.project_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM project_blobs pb "
            "WHERE pb.project_id = r.project_id AND pb.digest = m.digest) "
            "GROUP BY r.project_id, m.digest"
        ),
        {"now": now},
    )
    connection.execute(
        sa.text(
            "UPDATE projects SET quota_used_bytes = COALESCE((SELECT SUM(size) FROM project_blobs pb "
            "WHERE pb.project_id = projects.id), 0)"
        )
    )


def downgrade() -> None:
    op.drop_index("ix_immutable_rules_project_id", table_name="immutable_rules")
    op.drop_table("immutable_rules")
    op.drop_index("ix_project_blobs_digest", table_name="project_blobs")
    op.drop_table("project_blobs")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("quota_warn_percent")
        batch.drop_column("quota_used_bytes")
        batch.drop_column("quota_limit_bytes")
