"""Vulnerability database: OSV advisories, their affected packages, the imports, the allowlist

Revision ID: 0006_vulndb
Revises: 0005_proxy_projects
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_vulndb"
down_revision = "0005_proxy_projects"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vulndb_advisories",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("modified", _TIME, nullable=False),
        sa.Column("published", _TIME, nullable=True),
        sa.Column("withdrawn", _TIME, nullable=True),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("cvss_vector", sa.String(length=255), nullable=True),
        sa.Column("cvss_score", sa.Float(), nullable=True),
        sa.Column("import_id", _ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vulndb_advisories")),
    )
    op.create_index("ix_vulndb_advisories_import", "vulndb_advisories", ["import_id"])
    op.create_table(
        "vulndb_imports",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("affected", sa.Integer(), nullable=False),
        sa.Column("advisories_total", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vulndb_imports")),
    )
    op.create_table(
        "vulndb_affected",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("ecosystem", sa.String(length=255), nullable=False),
        sa.Column("package", sa.String(length=512), nullable=False),
        sa.Column("ranges", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["advisory_id"],
            ["vulndb_advisories.id"],
            name=op.f("fk_vulndb_affected_advisory_id_vulndb_advisories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vulndb_affected")),
    )
    op.create_index("ix_vulndb_affected_advisory", "vulndb_affected", ["advisory_id"])
    op.create_index("ix_vulndb_affected_package", "vulndb_affected", ["ecosystem", "package"])
    op.create_table(
        "vulndb_allowlist",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("vuln_id", sa.String(length=128), nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_vulndb_allowlist_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vulndb_allowlist")),
    )
    op.create_index("ix_vulndb_allowlist_vuln", "vulndb_allowlist", ["vuln_id"])


def downgrade() -> None:
    op.drop_index("ix_vulndb_allowlist_vuln", table_name="vulndb_allowlist")
    op.drop_table("vulndb_allowlist")
    op.drop_index("ix_vulndb_affected_package", table_name="vulndb_affected")
    op.drop_index("ix_vulndb_affected_advisory", table_name="vulndb_affected")
    op.drop_table("vulndb_affected")
    op.drop_table("vulndb_imports")
    op.drop_index("ix_vulndb_advisories_import", table_name="vulndb_advisories")
    op.drop_table("vulndb_advisories")
