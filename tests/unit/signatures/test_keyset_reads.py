"""A project's key set is read as the version and then the keys: a verdict stamped with a version
counts only while that version is current, so the keys it was made with must be no older than it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.db.session import Database
from dockyard.projects.services import ProjectService
from dockyard.signatures.keys import TrustedKeys
from tests.support.cosign import make_key
from tests.unit.accounts.fixtures import migrated_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_database(tmp_path)
    ProjectService(database).create("strict")
    yield database
    database.dispose()


def test_a_key_deleted_while_the_key_set_is_read_never_leaves_its_keys_with_the_new_version(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete lands between the reads (CI once served a signed image after its key was deleted,
    on PostgreSQL: a verify job's key set had the deleted key and the version after the delete)."""
    keys = TrustedKeys(db)
    keys.add("strict", "trusted", make_key("ecdsa", tmp_path, "trusted").public_pem, "admin")
    read_keys = TrustedKeys._keys

    def keys_read_as_the_key_goes(connection: Any, owner: int, project: str) -> Any:
        found = read_keys(connection, owner, project)
        TrustedKeys(db).delete("strict", "trusted")  # another request, committed meanwhile
        return found

    monkeypatch.setattr(TrustedKeys, "_keys", staticmethod(keys_read_as_the_key_goes))
    torn = keys.keyset("strict")
    monkeypatch.setattr(TrustedKeys, "_keys", staticmethod(read_keys))
    current = keys.keyset("strict")
    assert current.keys == ()
    if any(key.name == "trusted" for key in torn.keys):
        assert torn.version != current.version, "the deleted key's verdicts would count as current"
