"""Alembic environment: run with the connection `dockyard.db.migrate` hands in."""

from __future__ import annotations

from alembic import context

from dockyard.db.all_models import load_all_models

config = context.config
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    # Every model's tables, so an autogenerate (scripts/new-migration.py) never takes a table it was
    # not shown for one to drop.
    target_metadata=load_all_models(),
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    compare_server_default=True,
)
with context.begin_transaction():
    context.run_migrations()
