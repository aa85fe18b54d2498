"""Migrated SQLite databases for the unit tests, as copies of one template per test process.

Hundreds of unit tests each want a fresh database at every migration head. The template is made the
first time one is asked for, by running the migrations (whatever they are at the time), and each test
gets a copy of it: a page copy costs a fraction of running the migrations again. PostgreSQL's test
databases do the same with CREATE DATABASE ... TEMPLATE (tests/support/postgres.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade

_templates: dict[int, Path] = {}  # by process id: a forked child makes its own


def _template() -> Path:
    pid = os.getpid()
    if pid not in _templates:
        directory = Path(tempfile.mkdtemp(prefix="dockyard-sqlite-template-"))
        atexit.register(shutil.rmtree, directory, True)
        path = directory / "template.db"
        engine = build_engine(f"sqlite:///{path}")
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        _templates[pid] = path
    return _templates[pid]


def copy_migrated_sqlite(path: Path) -> None:
    """Make `path` a migrated SQLite database, unless a database is there already (left as it is).

    Copied with SQLite's backup API: the copy is whole even if the template's last writes were still
    in its write-ahead log."""
    if path.exists():
        return
    source = sqlite3.connect(_template())
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
