"""Upload sessions name their project (`uploads.project`), so the bytes of a project's uploads in
progress count against its quota in one indexed sum; `project_blobs (project_id, size)` answers
"the largest blob the project holds" from the index

Revision ID: 0016_upload_project
Revises: 0015_usernames_any_case
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_upload_project"
down_revision = "0015_usernames_any_case"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("project", sa.String(255), nullable=False, server_default=""))
    connection = op.get_bind()
    uploads = sa.table("uploads", sa.column("id", sa.String), sa.column("repository", sa.String))
    for upload_id, repository in connection.execute(sa.select(uploads.c.id, uploads.c.repository)).all():
        connection.execute(
            sa.text("UPDATE uploads SET project = :project WHERE id = :id"),
            {"project": repository.split("/", 1)[0], "id": upload_id},
        )
    with op.batch_alter_table("uploads") as batch:
        batch.alter_column("project", server_default=None)
    op.create_index("ix_uploads_project", "uploads", ["project"])
    op.create_index("ix_project_blobs_project_id_size", "project_blobs", ["project_id", "size"])


def downgrade() -> None:
    op.drop_index("ix_project_blobs_project_id_size", table_name="project_blobs")
    op.drop_index("ix_uploads_project", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("project")
