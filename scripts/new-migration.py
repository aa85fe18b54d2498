"""Autogenerate an Alembic migration from the models: `python scripts/new-migration.py "message"`.

Runs against a scratch SQLite DB brought to head first, so only the model changes are emitted. The
models come from `dockyard.db.all_models` (through migrations/env.py): every `models.py` in the package,
so no table is missing from the comparison (a missing one would come out as a `drop_table`).

Read what it wrote before committing: SQLite reflection misses some things (expression indexes such as
`uq_users_username_lower`), and the migration must also run on PostgreSQL
(tests/unit/db/test_migrations.py checks both).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from dockyard.db.engine import build_engine
from dockyard.db.migrate import alembic_config, upgrade


def main() -> None:
    message = sys.argv[1] if len(sys.argv) > 1 else "change"
    with tempfile.TemporaryDirectory() as scratch:
        engine = build_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        upgrade(engine)
        with engine.connect() as connection:
            command.revision(alembic_config(connection), message=message, autogenerate=True)


if __name__ == "__main__":
    main()
