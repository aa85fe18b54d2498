"""Personal access tokens: shown once, stored hashed, bound to their user, expiring, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dockyard.accounts.interfaces import InvalidExpiry, InvalidName, PersonalTokenNotFound, UserNotFound
from dockyard.accounts.models import PersonalTokenRow
from dockyard.db.base import utcnow
from tests.unit.accounts.fixtures import PASSWORD, Services


@pytest.fixture
def alice(services: Services) -> Services:
    services.users.create("alice", PASSWORD)
    return services


def test_a_new_token_logs_its_user_in(alice: Services) -> None:
    created = alice.tokens.create("alice", "laptop")
    assert created.secret.startswith("dyp_")
    assert created.token.hint == created.secret[:12] and created.token.name == "laptop"
    user = alice.tokens.authenticate("alice", created.secret)
    assert user is not None and user.username == "alice"
    assert alice.tokens.list("alice")[0].last_used_at is not None


def test_only_the_hash_is_stored(alice: Services) -> None:
    created = alice.tokens.create("alice", "laptop")
    with alice.db.read() as connection:
        row = connection.execute(select(PersonalTokenRow)).one()
    assert created.secret not in (row.secret_hash, row.hint, row.name)
    assert [t.id for t in alice.tokens.list("alice")] == [created.token.id]


def test_wrong_secret_or_other_user(alice: Services) -> None:
    alice.users.create("bob", PASSWORD)
    created = alice.tokens.create("alice", "laptop")
    assert alice.tokens.authenticate("bob", created.secret) is None  # a token works for its owner only
    altered = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    assert alice.tokens.authenticate("alice", altered) is None
    assert alice.tokens.authenticate("alice", PASSWORD) is None


def test_expired_tokens_and_disabled_users_are_refused(alice: Services) -> None:
    created = alice.tokens.create("alice", "ci", expires_at=utcnow() + timedelta(hours=1))
    assert alice.tokens.authenticate("alice", created.secret) is not None
    with alice.db.write() as connection:
        connection.execute(update(PersonalTokenRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert alice.tokens.authenticate("alice", created.secret) is None
    fresh = alice.tokens.create("alice", "ci2")
    alice.users.update("alice", disabled=True)
    assert alice.tokens.authenticate("alice", fresh.secret) is None


def test_bad_input(alice: Services) -> None:
    with pytest.raises(InvalidExpiry):
        alice.tokens.create("alice", "old", expires_at=utcnow() - timedelta(minutes=1))
    with pytest.raises(InvalidName):
        alice.tokens.create("alice", "")
    with pytest.raises(UserNotFound):
        alice.tokens.create("nobody", "x")


def test_revoke_own_tokens_only(alice: Services) -> None:
    alice.users.create("bob", PASSWORD)
    created = alice.tokens.create("alice", "laptop")
    with pytest.raises(PersonalTokenNotFound):
        alice.tokens.revoke("bob", created.token.id)
    assert alice.tokens.authenticate("alice", created.secret) is not None
    alice.tokens.revoke("alice", created.token.id)
    assert alice.tokens.authenticate("alice", created.secret) is None
    assert alice.tokens.list("alice") == []
