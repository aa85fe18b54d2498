"""Is the schema at the head revision? One SELECT, without loading Alembic.

Every start of `dockyard serve` (and of each node in HA) checks the schema. Alembic, its plugins and
the migration scripts take a few hundred milliseconds to load, for what is almost always a database
already at this version's head: so the head is read from the migration files' `revision` and
`down_revision` lines, and the database's from `alembic_version`. Only a database that is not at the
head goes through Alembic (`ensure_current`), which migrates it, or refuses one at an unknown revision
(a newer dockyard's) with its own message, as before.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, inspect, text

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
_NAME = re.compile(r"""["']([^"']+)["']""")


@cache
def head_revisions() -> frozenset[str]:
    """The revisions no migration names as its `down_revision`, read from the files: what Alembic's
    `ScriptDirectory.get_heads()` gives (tests/unit/db/test_revision.py checks they agree)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in VERSIONS_DIR.glob("*.py"):
        for name, value in _ASSIGNMENT.findall(script.read_text()):
            names = set(_NAME.findall(value))
            (revisions if name == "revision" else parents).update(names)
    return frozenset(revisions - parents)


def database_revisions(engine: Engine) -> frozenset[str]:
    """The revisions in `alembic_version` (none before the first migration)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return frozenset()
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(str(row[0]) for row in rows)


def at_head(engine: Engine) -> bool:
    return database_revisions(engine) == head_revisions()


def ensure_current(engine: Engine) -> None:
    """Migrate the schema to the head unless it is there already (then Alembic is never loaded)."""
    if at_head(engine):
        return
    from dockyard.db.migrate import upgrade

    upgrade(engine)
