"""Alembic environment: run with the connection `dockyard.db.migrate` hands in."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
# Only set when generating a migration (scripts/new-migration.py); None at run time.
target_metadata = config.attributes.get("target_metadata")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
