"""Every table the models declare, from one place.

Each package keeps its tables in its own `models.py`, beside the code that uses them; `load_all_models`
imports them all, so everything that needs the whole schema sees the same complete `Base.metadata`: the
migrations' autogenerate (migrations/env.py, scripts/new-migration.py), the tests that hold the
migrations to the models, and the table copy of backups and moves (maintenance.tables).

The modules are found, not listed: a package that adds a `models.py` is included without a change here,
so no caller can miss one. They are imported by name when asked for (this low layer names no package
above it at import time).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sqlalchemy import MetaData

import dockyard
from dockyard.db.base import Base


def model_modules() -> list[str]:
    """The dotted names of every `models.py` in the package, sorted."""
    root = Path(dockyard.__file__).parent
    return [
        ".".join(("dockyard", *path.relative_to(root).with_suffix("").parts))
        for path in sorted(root.rglob("models.py"))
    ]


def load_all_models() -> MetaData:
    """`Base.metadata` with every table of every model module registered."""
    for name in model_modules():
        importlib.import_module(name)
    return Base.metadata
