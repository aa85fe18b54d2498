"""Join the branches of the storage-lifecycle work (jobs, GC, project policies, retention) into one head

Revision ID: 0011_storage_lifecycle
Revises: 0007_jobs, 0008_gc, 0009_project_policies, 0010_retention
"""

from __future__ import annotations

revision = "0011_storage_lifecycle"
down_revision = ("0007_jobs", "0008_gc", "0009_project_policies", "0010_retention")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a merge point: the four branches changed separate tables and columns


def downgrade() -> None:
    pass
