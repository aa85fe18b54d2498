"""Scans: stored scan results per artifact (repository and digest), their findings, scan settings

Revision ID: 0011_scans
Revises: 0010_pull_policies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_scans"
down_revision = "0010_pull_policies"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scan_settings",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("scan_on_push", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_scan_settings_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_scan_settings")),
    )
    op.create_table(
        "scans",
        sa.Column("repository_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("requested_at", _TIME, nullable=False),
        sa.Column("started_at", _TIME, nullable=True),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.Column("scanned_at", _TIME, nullable=True),
        sa.Column("vulndb_version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("packages", sa.Integer(), nullable=True),
        sa.Column("critical", sa.Integer(), nullable=True),
        sa.Column("high", sa.Integer(), nullable=True),
        sa.Column("medium", sa.Integer(), nullable=True),
        sa.Column("low", sa.Integer(), nullable=True),
        sa.Column("negligible", sa.Integer(), nullable=True),
        sa.Column("unknown", sa.Integer(), nullable=True),
        sa.Column("allowlisted", sa.Integer(), nullable=True),
        sa.Column("allowlist_until", _TIME, nullable=True),
        sa.Column("incomplete", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_scans_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_scans_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "digest", name=op.f("pk_scans")),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scans_project_id"), ["project_id"], unique=False)
        batch_op.create_index("ix_scans_stale", ["status", "vulndb_version"], unique=False)

    op.create_table(
        "scan_findings",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("image", sa.String(length=160), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("cvss_score", sa.Float(), nullable=True),
        sa.Column("cvss_vector", sa.String(length=255), nullable=True),
        sa.Column("ecosystem", sa.String(length=255), nullable=False),
        sa.Column("package", sa.String(length=512), nullable=False),
        sa.Column("installed_version", sa.String(length=255), nullable=False),
        sa.Column("fixed_versions", sa.JSON(), nullable=False),
        sa.Column("layer", sa.String(length=160), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("purl", sa.Text(), nullable=False),
        sa.Column("allowlisted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id", "digest"],
            ["scans.repository_id", "scans.digest"],
            name=op.f("fk_scan_findings_repository_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_findings")),
    )
    with op.batch_alter_table("scan_findings", schema=None) as batch_op:
        batch_op.create_index("ix_scan_findings_scan", ["repository_id", "digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scan_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_scan_findings_scan")

    op.drop_table("scan_findings")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index("ix_scans_stale")
        batch_op.drop_index(batch_op.f("ix_scans_project_id"))

    op.drop_table("scans")
    op.drop_table("scan_settings")
