"""Token signing keys at rest: encrypted under a passphrase that is not in the database, and keys an older
version stored in the clear (or under an older passphrase) moved to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from dockyard.auth.keystore import encrypt_at_rest, open_key
from dockyard.auth.models import SigningKey
from dockyard.auth.tokens import KeyRing
from dockyard.db.session import Database
from tests.support.postgres import migrated_scratch_database

ENCRYPTED = "-----BEGIN ENCRYPTED PRIVATE KEY-----"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = migrated_scratch_database(tmp_path, "keys.db")
    yield database
    database.dispose()


def stored(db: Database) -> dict[str, str]:
    with db.read() as connection:
        return dict(connection.execute(select(SigningKey.kid, SigningKey.private_key)).all())


def test_keys_in_the_clear_are_encrypted_and_keep_their_kid(db: Database) -> None:
    plain = KeyRing(db)  # as an older version stored them
    kid = plain.rotate()
    retired = plain.rotate()
    plain.retire(retired)
    assert stored(db)[kid].startswith("-----BEGIN PRIVATE KEY-----")

    assert encrypt_at_rest(db, b"node secret", [None]) == 2  # the retired key too
    rows = stored(db)
    assert all(pem.startswith(ENCRYPTED) for pem in rows.values())
    with pytest.raises(TypeError):  # no longer readable without the passphrase
        serialization.load_pem_private_key(rows[kid].encode(), None)
    ring = KeyRing(db, passphrase=b"node secret")
    assert ring.signing_key().kid == kid
    assert encrypt_at_rest(db, b"node secret", [None]) == 0


def test_keys_under_an_older_passphrase_move_to_the_new_one(db: Database) -> None:
    kid = KeyRing(db, passphrase=b"datadir secret").rotate()
    # Until they are moved, a ring reads them with the older passphrase.
    assert (
        KeyRing(db, passphrase=b"http secret", older_passphrases=[b"datadir secret"]).signing_key().kid == kid
    )
    assert encrypt_at_rest(db, b"http secret", [b"datadir secret", None]) == 1
    assert open_key(stored(db)[kid], [b"http secret"]) is not None
    assert open_key(stored(db)[kid], [b"datadir secret", None]) is None


def test_a_key_under_an_unknown_passphrase_is_left_alone(db: Database) -> None:
    kid = KeyRing(db, passphrase=b"another node's secret").rotate()
    before = stored(db)[kid]
    assert encrypt_at_rest(db, b"mine", [None]) == 0
    assert stored(db)[kid] == before
