"""Users: creation rules, listing, updates, the last-admin guard, password checks, directory users."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dockyard.accounts.directory import ExternalIdentity
from dockyard.accounts.interfaces import (
    InvalidName,
    LastAdmin,
    UserExists,
    UserNotFound,
    UserSource,
    WeakPassword,
    WrongPassword,
)
from dockyard.accounts.models import UserRow
from dockyard.errors import PaginationInvalid
from tests.unit.accounts.fixtures import PASSWORD, Services


def test_create_and_get(services: Services) -> None:
    created = services.users.create("alice", PASSWORD, email="a@example.org", display_name="Alice")
    assert services.users.get("alice") == created
    assert services.users.get_by_id(created.id) == created
    assert created.source is UserSource.LOCAL
    assert not created.is_admin and not created.disabled and created.last_login_at is None
    assert created.created_at.tzinfo is not None


def test_password_is_stored_hashed(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    with services.db.read() as connection:
        stored = connection.execute(select(UserRow.password_hash)).scalar_one()
    assert PASSWORD not in stored and stored.startswith("$argon2id$")


def test_duplicate_invalid_and_weak(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    with pytest.raises(UserExists):
        services.users.create("alice", PASSWORD)
    with pytest.raises(InvalidName):
        services.users.create("robot$alice", PASSWORD)
    with pytest.raises(WeakPassword):
        services.users.create("bob", "short")
    with pytest.raises(WeakPassword):
        services.users.create("carol", None)
    assert services.users.count() == 1


def test_usernames_are_unique_and_found_whatever_their_case(services: Services) -> None:
    """`Admin` beside `admin` was allowed: one could pass for the other in the UI, audit log and
    member lists. Now the first spelling is the name, and every lookup finds it in any case."""
    services.users.create("admin", PASSWORD, admin=True)
    for impostor in ("Admin", "ADMIN", "aDmIn"):
        with pytest.raises(UserExists):
            services.users.create(impostor, PASSWORD)
    assert services.users.count() == 1
    assert services.users.get("ADMIN").username == "admin"
    user = services.users.verify_password("Admin", PASSWORD)  # a login in another case: the same user
    assert user is not None and user.username == "admin"
    services.users.set_password("ADMIN", "another new password", current_password=PASSWORD)
    assert services.users.verify_password("admin", "another new password") is not None
    services.users.create("kate", PASSWORD)
    assert services.users.find("\u212aate") is None  # the Kelvin sign lower-cases to "k": no match
    services.users.create("Bob.Smith", PASSWORD)
    assert services.users.get("bob.smith").username == "Bob.Smith"  # kept as first written
    services.users.delete("BOB.SMITH")
    assert services.users.find("Bob.Smith") is None


def test_unknown_user(services: Services) -> None:
    assert services.users.find("nobody") is None
    with pytest.raises(UserNotFound):
        services.users.get("nobody")
    with pytest.raises(UserNotFound):
        services.users.delete("nobody")
    with pytest.raises(UserNotFound):
        services.users.update("nobody", disabled=True)


def test_list_search_filter_sort_page(services: Services) -> None:
    for name in ["carol", "alice", "bob", "dave"]:
        services.users.create(name, PASSWORD, email=f"{name}@example.org", admin=name == "dave")
    page = services.users.list(limit=2)
    assert [u.username for u in page.items] == ["alice", "bob"] and page.total == 4
    page = services.users.list(offset=2, limit=2)
    assert [u.username for u in page.items] == ["carol", "dave"]
    assert services.users.list(sort="username", descending=True).items[0].username == "dave"
    assert [u.username for u in services.users.list(search="CAR").items] == ["carol"]
    assert [u.username for u in services.users.list(admin=True).items] == ["dave"]
    assert services.users.list(search="%").total == 0  # wildcards match themselves
    with pytest.raises(PaginationInvalid):
        services.users.list(sort="password_hash")
    with pytest.raises(PaginationInvalid):
        services.users.list(limit=0)


def test_update_fields(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    updated = services.users.update("alice", email="new@example.org", admin=True)
    assert updated.email == "new@example.org" and updated.is_admin
    updated = services.users.update("alice", display_name=None)
    assert updated.email == "new@example.org"  # untouched when not given


def test_last_enabled_admin_cannot_be_removed(services: Services) -> None:
    services.users.create("root", PASSWORD, admin=True)
    services.users.create("alice", PASSWORD)
    for change in [{"admin": False}, {"disabled": True}]:
        with pytest.raises(LastAdmin):
            services.users.update("root", **change)
    with pytest.raises(LastAdmin):
        services.users.delete("root")
    services.users.create("second", PASSWORD, admin=True)
    services.users.update("root", disabled=True)  # another enabled admin exists
    with pytest.raises(LastAdmin):
        services.users.update("second", admin=False)
    services.users.delete("alice")  # not an admin: no guard


def test_set_password(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    with pytest.raises(WrongPassword):
        services.users.set_password("alice", "a new password", current_password="wrong password")
    with pytest.raises(WeakPassword):
        services.users.set_password("alice", "short", current_password=PASSWORD)
    services.users.set_password("alice", "a new password", current_password=PASSWORD)
    assert services.users.verify_password("alice", PASSWORD) is None
    assert services.users.verify_password("alice", "a new password") is not None


def test_verify_password(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    user = services.users.verify_password("alice", PASSWORD)
    assert user is not None and user.username == "alice"
    assert services.users.get("alice").last_login_at is not None
    assert services.users.verify_password("alice", PASSWORD + "x") is None
    assert services.users.verify_password("nobody", PASSWORD) is None
    services.users.update("alice", disabled=True)
    assert services.users.verify_password("alice", PASSWORD) is None


def test_directory_users_are_created_then_refreshed(services: Services) -> None:
    identity = ExternalIdentity("dora", "dora@example.org", "Dora", frozenset({"devs"}), is_admin=True)
    user = services.users.sync_directory_user(identity)
    assert user.source is UserSource.LDAP and user.is_admin and not user.admin
    assert services.users.verify_password("dora", "") is None  # no local password to guess
    user = services.users.sync_directory_user(
        ExternalIdentity("dora", "new@example.org", "Dora", frozenset(), is_admin=False)
    )
    assert user.email == "new@example.org" and not user.is_admin
    with pytest.raises(ValueError):
        services.users.create("eve", PASSWORD, source=UserSource.LDAP)


def test_directory_does_not_take_over_a_local_account(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    with pytest.raises(UserExists):
        services.users.sync_directory_user(ExternalIdentity("alice", None, None, frozenset(), is_admin=True))
    assert not services.users.get("alice").is_admin


def test_deleting_a_user_deletes_their_tokens_and_memberships(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    token = services.tokens.create("alice", "laptop")
    services.projects.create("team")
    services.members.add_user("team", "alice", "developer")
    services.users.delete("alice")
    services.users.create("alice", PASSWORD)  # same name, new account: nothing carried over
    assert services.tokens.authenticate("alice", token.secret) is None
    assert services.members.list("team").total == 0
