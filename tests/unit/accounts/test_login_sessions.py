"""Open management sessions: found while open, gone once closed, expired or their user deleted."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from dockyard.accounts.credentials import Credential, CredentialKind
from dockyard.accounts.models import LoginSessionRow
from dockyard.accounts.sessions import LoginSessionService
from dockyard.db.base import utcnow
from tests.unit.accounts.fixtures import PASSWORD, Services

PASSWORD_CREDENTIAL = Credential(CredentialKind.PASSWORD, "P" * 22)


def test_a_session_is_found_until_it_is_closed(services: Services) -> None:
    user = services.users.create("alice", PASSWORD)
    sessions = LoginSessionService(services.db)
    sessions.open("key-1", user.id, PASSWORD_CREDENTIAL, utcnow() + timedelta(hours=8))
    found = sessions.find("key-1")
    assert found is not None and found.user_id == user.id and found.credential == PASSWORD_CREDENTIAL
    assert sessions.find("key-2") is None
    renewed = Credential(CredentialKind.PASSWORD, "Q" * 22)
    sessions.rebind("key-1", renewed)
    assert (found := sessions.find("key-1")) is not None and found.credential == renewed
    sessions.close("key-1")
    assert sessions.find("key-1") is None


def test_expired_sessions_are_not_found_and_are_dropped_at_the_next_login(services: Services) -> None:
    user = services.users.create("alice", PASSWORD)
    sessions = LoginSessionService(services.db)
    sessions.open("old", user.id, PASSWORD_CREDENTIAL, utcnow() - timedelta(seconds=1))
    assert sessions.find("old") is None
    sessions.open("new", user.id, PASSWORD_CREDENTIAL, utcnow() + timedelta(hours=8))
    with services.db.read() as connection:
        assert connection.execute(select(func.count()).select_from(LoginSessionRow)).scalar_one() == 1


def test_deleting_the_user_deletes_their_sessions(services: Services) -> None:
    services.users.create("root", PASSWORD, admin=True)
    user = services.users.create("alice", PASSWORD)
    sessions = LoginSessionService(services.db)
    sessions.open("key", user.id, PASSWORD_CREDENTIAL, utcnow() + timedelta(hours=8))
    services.users.delete("alice")
    assert sessions.find("key") is None
