"""Merge the auth branches; every repository belongs to a project (its first path component)

Revision ID: 0005_repository_projects
Revises: 0002_accounts_projects, 0003_auth_keys, 0004_audit
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_repository_projects"
down_revision = ("0002_accounts_projects", "0003_auth_keys", "0004_audit")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("project_id", sa.Integer(), nullable=True))
        batch.create_index("ix_repositories_project_id", ["project_id"])
        batch.create_foreign_key(
            "fk_repositories_project_id_projects", "projects", ["project_id"], ["id"], ondelete="RESTRICT"
        )
    _adopt_existing_repositories()


def _adopt_existing_repositories() -> None:
    """Repositories pushed before projects existed: create each first component's project (private,
    like any project created by a push) and attach the repositories to it."""
    connection = op.get_bind()
    repositories = sa.table("repositories", sa.column("id"), sa.column("name"), sa.column("project_id"))
    projects = sa.table(
        "projects",
        sa.column("id"),
        sa.column("name"),
        sa.column("public"),
        sa.column("created_at"),
        sa.column("updated_at"),
    )
    names = {row.name.split("/", 1)[0] for row in connection.execute(sa.select(repositories.c.name))}
    now = datetime.now(UTC)
    for name in sorted(names):
        project_id = connection.scalar(sa.select(projects.c.id).where(projects.c.name == name))
        if project_id is None:
            project_id = connection.execute(
                projects.insert().values(name=name, public=False, created_at=now, updated_at=now)
            ).inserted_primary_key[0]  # type: ignore[index]
        connection.execute(
            repositories.update()
            .where(sa.or_(repositories.c.name == name, repositories.c.name.like(f"{name}/%")))
            .values(project_id=project_id)
        )


def downgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.drop_constraint("fk_repositories_project_id_projects", type_="foreignkey")
        batch.drop_index("ix_repositories_project_id")
        batch.drop_column("project_id")
