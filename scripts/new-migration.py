"""Autogenerate an Alembic migration from the models: `python scripts/new-migration.py "message"`.

Runs against a scratch SQLite DB brought to head first, so only the model changes are emitted.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from dockyard.accounts import models as _accounts_models  # noqa: F401  (registers tables)
from dockyard.audit import models as _audit_models  # noqa: F401  (registers tables)
from dockyard.auth import models as _auth_models  # noqa: F401
from dockyard.db.base import Base
from dockyard.db.engine import build_engine
from dockyard.db.migrate import alembic_config, upgrade
from dockyard.projects import models as _projects_models  # noqa: F401
from dockyard.registry import models as _registry_models  # noqa: F401
from dockyard.storage import models as _storage_models  # noqa: F401


def main() -> None:
    message = sys.argv[1] if len(sys.argv) > 1 else "change"
    with tempfile.TemporaryDirectory() as scratch:
        engine = build_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        upgrade(engine)
        with engine.connect() as connection:
            config = alembic_config(connection, Base.metadata)
            command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    main()
