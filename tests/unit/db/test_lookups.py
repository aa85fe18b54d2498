"""db.lookups: point reads on raw driver connections fail the way SQLAlchemy's do (so the API's one
mapping applies: 503 for an unavailable database), and close with the Database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy import exc as sa_exc

from dockyard.api.oci.errors import render_error
from dockyard.db.engine import build_engine
from dockyard.db.migrate import upgrade
from dockyard.db.session import Database, database_unavailable
from dockyard.registry.models import Repository
from tests.support.server import free_port

BY_NAME = select(Repository.id).where(Repository.name == bindparam("name"))


def test_an_unreachable_postgresql_is_a_503_from_a_lookup_too() -> None:
    db = Database(build_engine(f"postgresql://dockyard@127.0.0.1:{free_port()}/nothing"))
    try:
        with pytest.raises(sa_exc.OperationalError) as raised:
            db.lookups.one(db.lookups.prepare(BY_NAME), {"name": "team/app"})
    finally:
        db.dispose()
    assert database_unavailable(raised.value)
    assert render_error(raised.value).status_code == 503


def test_a_sqlite_lookup_error_is_sqlalchemys_and_connections_close_with_the_database(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    db = Database(engine)
    lookup = db.lookups.prepare(BY_NAME)
    with pytest.raises(sa_exc.OperationalError):  # not migrated: no such table
        db.lookups.one(lookup, {"name": "team/app"})
    upgrade(engine)
    assert db.lookups.one(lookup, {"name": "team/app"}) is None
    assert db.lookups.one(lookup, {"name": "team/app"}, wait=False) is None
    db.dispose()
    (tmp_path / "dockyard.db").unlink()  # closed: a new lookup opens a new connection, on a new file
    with pytest.raises(sa_exc.OperationalError):
        db.lookups.one(lookup, {"name": "team/app"})
