"""LocalAuthenticator: passwords, personal tokens, robot secrets, the directory, and the login limiter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from dockyard.accounts.credentials import CredentialKind
from dockyard.accounts.directory import DirectoryUnavailable, ExternalIdentity
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.models import RobotRow
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind
from dockyard.auth.local import LocalAuthenticator
from dockyard.db.base import utcnow
from tests.unit.accounts.fixtures import PASSWORD, FakeClock, Services


class FakeDirectory:
    """A directory with one user, dora, whose password is "directory password"."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False
        self.groups = frozenset({"cn=devs,dc=org"})
        self.admin = False

    def verify(self, username: str, password: str) -> ExternalIdentity | None:
        self.calls += 1
        if self.down:
            raise DirectoryUnavailable()
        if username in ("dora", "Dora") and password == "directory password":
            return ExternalIdentity("dora", "dora@example.org", "Dora", self.groups, self.admin)
        return None


def make(
    services: Services,
    directory: FakeDirectory | None = None,
    max_failures: int = 3,
    **counts: int,
) -> LocalAuthenticator:
    limiter = InProcessLoginLimiter(max_failures, 60, clock=FakeClock(), **counts)
    return LocalAuthenticator(
        services.users, services.groups, services.tokens, services.robots, limiter, directory
    )


def test_password(services: Services) -> None:
    user = services.users.create("alice", PASSWORD, admin=True)
    principal = make(services).authenticate("alice", PASSWORD, "10.0.0.1")
    assert principal == Principal(PrincipalKind.USER, "alice", user.id, True, frozenset())


@pytest.mark.parametrize(
    ("username", "secret"),
    [("alice", "wrong password"), ("nobody", PASSWORD), ("", PASSWORD), ("alice", "")],
)
def test_wrong_credentials_fail_the_same_way(services: Services, username: str, secret: str) -> None:
    services.users.create("alice", PASSWORD)
    with pytest.raises(AuthenticationFailed) as caught:
        make(services).authenticate(username, secret)
    assert caught.value.message == "authentication required"  # says nothing about which part


def test_a_username_in_another_case_is_the_same_user(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    token = services.tokens.create("alice", "ci")
    authenticator = make(services)
    for name, secret in (("ALICE", PASSWORD), ("Alice", token.secret)):
        assert authenticator.authenticate(name, secret, "192.0.2.1").name == "alice"


def test_disabled_user(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    token = services.tokens.create("alice", "ci")
    services.users.update("alice", disabled=True)
    for secret in (PASSWORD, token.secret):
        with pytest.raises(AuthenticationFailed):
            make(services).authenticate("alice", secret)


def test_personal_token_instead_of_password(services: Services) -> None:
    services.groups.create("devs")
    services.users.create("alice", PASSWORD)
    services.groups.add_user("devs", "alice")
    token = services.tokens.create("alice", "ci")
    principal = make(services).authenticate("alice", token.secret)
    assert (principal.kind, principal.name, principal.groups) == (PrincipalKind.USER, "alice", {"devs"})


def test_a_password_that_looks_like_a_token_still_works(services: Services) -> None:
    services.users.create("alice", "dyp_my-odd-password")
    assert make(services).authenticate("alice", "dyp_my-odd-password").name == "alice"


def test_robot_secret(services: Services) -> None:
    services.projects.create("team")
    created = services.robot_access.create("ci", project="team", permissions={"team": ["pull"]})
    principal = make(services).authenticate("robot$team+ci", created.secret)
    assert principal == Principal(PrincipalKind.ROBOT, "robot$team+ci", created.robot.id)
    assert not principal.is_admin


def test_expired_and_disabled_robots(services: Services) -> None:
    created = services.robots.create("ci")
    services.robots.update("robot$ci", disabled=True)
    with pytest.raises(AuthenticationFailed):
        make(services).authenticate("robot$ci", created.secret)
    services.robots.update("robot$ci", disabled=False)
    with services.db.write() as connection:
        connection.execute(update(RobotRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(AuthenticationFailed):
        make(services).authenticate("robot$ci", created.secret)


def test_a_robot_name_never_falls_back_to_passwords(services: Services) -> None:
    with pytest.raises(AuthenticationFailed):
        make(services, FakeDirectory()).authenticate("robot$ci", "directory password")


def test_a_guessing_address_is_refused_even_the_right_password_and_told_nothing_more(
    services: Services,
) -> None:
    services.users.create("alice", PASSWORD)
    authenticator = make(services, max_failures=3)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate("alice", "guess", "192.0.2.1")
    with pytest.raises(AuthenticationFailed) as caught:
        authenticator.authenticate("alice", PASSWORD, "192.0.2.1")
    assert caught.value.message == "authentication required"
    # The owner, from an address that has not failed, is not locked out by somebody else's guesses.
    assert authenticator.authenticate("alice", PASSWORD, "192.0.2.2").name == "alice"


def test_rate_limit_per_address_stops_spraying(services: Services) -> None:
    for name in ["alice", "bob", "carol", "dave"]:
        services.users.create(name, PASSWORD)
    authenticator = make(services, max_failures=3, per_address=3)
    for name in ["alice", "bob", "carol"]:
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate(name, "Summer2024!", "192.0.2.1")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("dave", PASSWORD, "192.0.2.1")
    assert authenticator.authenticate("dave", PASSWORD, "192.0.2.9").name == "dave"


def test_a_guarded_account_still_takes_its_personal_token_but_no_password(services: Services) -> None:
    services.users.create("alice", "dyp_my-odd-password")
    token = services.tokens.create("alice", "ci")
    authenticator = make(services, max_failures=3)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate("alice", "guess", "192.0.2.1")
    assert authenticator.authenticate("alice", token.secret, "192.0.2.1").name == "alice"
    # A token's success forgets this address's failures for the account: guard again, then a
    # password that merely starts like a token is not checked (guessing cannot slip through as one).
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate("alice", "guess", "192.0.2.1")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("alice", "dyp_my-odd-password", "192.0.2.1")
    assert authenticator.authenticate("alice", "dyp_my-odd-password", "192.0.2.2").name == "alice"


def test_guessing_a_robots_secret_never_locks_the_robot(services: Services) -> None:
    created = services.robots.create("ci")
    authenticator = make(services, max_failures=3, per_address=50)
    for n in range(49):  # far past the per-account limits, from one address
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate("robot$ci", f"dyr_guess-{n}", "192.0.2.1")
    assert authenticator.authenticate("robot$ci", created.secret, "192.0.2.1").name == "robot$ci"
    assert authenticator.authenticate("robot$ci", created.secret, "192.0.2.2").name == "robot$ci"
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("robot$ci", "dyr_guess-49", "192.0.2.1")
    # Now the guessing address is over its own limit: refused whatever it sends.
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("robot$ci", created.secret, "192.0.2.1")
    assert authenticator.authenticate("robot$ci", created.secret, "192.0.2.2").name == "robot$ci"


def test_an_account_guessed_from_many_addresses_lets_the_owner_in(services: Services) -> None:
    services.users.create("admin", PASSWORD)
    authenticator = make(services, max_failures=3, per_account=5)
    for n in range(10):
        with pytest.raises(AuthenticationFailed):
            authenticator.authenticate("admin", f"guess-{n}", f"203.0.113.{n}")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("admin", PASSWORD, "203.0.113.1")  # a guessing address
    assert authenticator.authenticate("admin", PASSWORD, "192.0.2.2").name == "admin"


def test_directory_login_creates_the_user_with_groups(services: Services) -> None:
    directory = FakeDirectory()
    directory.admin = True
    principal = make(services, directory).authenticate("dora", "directory password")
    assert principal.name == "dora" and principal.is_admin and principal.groups == {"cn=devs,dc=org"}
    user = services.users.get("dora")
    assert user.email == "dora@example.org" and user.directory_admin and not user.admin
    directory.groups = frozenset({"cn=ops,dc=org"})
    directory.admin = False
    principal = make(services, directory).authenticate("Dora", "directory password")
    assert principal.name == "dora" and not principal.is_admin and principal.groups == {"cn=ops,dc=org"}
    with pytest.raises(AuthenticationFailed):
        make(services, directory).authenticate("dora", "wrong")


def test_directory_is_not_asked_about_local_users(services: Services) -> None:
    services.users.create("dora", PASSWORD)
    directory = FakeDirectory()
    with pytest.raises(AuthenticationFailed):
        make(services, directory).authenticate("dora", "directory password")
    assert directory.calls == 0
    assert make(services, directory).authenticate("dora", PASSWORD).name == "dora"


def test_disabled_directory_user(services: Services) -> None:
    directory = FakeDirectory()
    make(services, directory).authenticate("dora", "directory password")
    services.users.update("dora", disabled=True)
    with pytest.raises(AuthenticationFailed):
        make(services, directory).authenticate("dora", "directory password")


def test_directory_down_is_not_a_failed_login(services: Services) -> None:
    directory = FakeDirectory()
    directory.down = True
    authenticator = make(services, directory, max_failures=1)
    with pytest.raises(DirectoryUnavailable):
        authenticator.authenticate("dora", "directory password")
    directory.down = False
    assert authenticator.authenticate("dora", "directory password").name == "dora"


def test_reload_sees_the_account_as_it_is_now(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    authenticator = make(services)
    principal = authenticator.authenticate("alice", PASSWORD)
    services.users.update("alice", admin=True)
    assert authenticator.reload(principal).is_admin
    services.users.create("root", PASSWORD, admin=True)
    services.users.update("alice", disabled=True)
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(principal)
    created = services.robots.create("ci")
    robot = authenticator.authenticate("robot$ci", created.secret)
    services.robots.delete("robot$ci")
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(robot)


# --- what a login hands out dies with its credential ----------------------------------------------
def test_reload_refuses_a_changed_password_but_not_an_unrelated_change(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    authenticator = make(services)
    principal = authenticator.authenticate("alice", PASSWORD)
    assert principal.credential is not None and principal.credential.kind is CredentialKind.PASSWORD
    services.users.update("alice", email="alice@example.org")
    assert authenticator.reload(principal).credential == principal.credential
    services.users.set_password("alice", "another good password")
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(principal)
    assert authenticator.reload(authenticator.authenticate("alice", "another good password")).name == "alice"


def test_reload_refuses_a_refreshed_robot_secret_and_a_revoked_personal_token(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    created = services.robots.create("ci")
    authenticator = make(services)
    robot = authenticator.authenticate("robot$ci", created.secret)
    services.robots.refresh_secret("robot$ci")
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(robot)
    first, second = services.tokens.create("alice", "one"), services.tokens.create("alice", "two")
    by_first = authenticator.authenticate("alice", first.secret)
    by_second = authenticator.authenticate("alice", second.secret)
    assert by_first.credential is not None and by_first.credential.token_id == first.token.id
    services.tokens.revoke("alice", first.token.id)
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(by_first)
    assert authenticator.reload(by_second).name == "alice"


def test_reload_refuses_a_principal_that_names_no_credential(services: Services) -> None:
    """A refresh token from before credentials were named: nothing says its credential still stands."""
    user = services.users.create("alice", PASSWORD)
    with pytest.raises(AuthenticationFailed):
        make(services).reload(Principal(PrincipalKind.USER, "alice", user.id))


def test_reload_refuses_a_credential_of_another_account(services: Services) -> None:
    services.users.create("alice", PASSWORD)
    bob = services.users.create("bob", PASSWORD)
    authenticator = make(services)
    alice = authenticator.authenticate("alice", PASSWORD)
    # Alice's password fingerprint presented as Bob's (same password, different salt and account).
    forged = Principal(PrincipalKind.USER, "bob", bob.id, credential=alice.credential)
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(forged)


def test_a_directory_login_names_a_credential_dockyard_cannot_watch(services: Services) -> None:
    authenticator = make(services, FakeDirectory())
    principal = authenticator.authenticate("dora", "directory password")
    assert principal.credential is not None and not principal.credential.revocable
    assert authenticator.reload(principal).name == "dora"  # a session goes on until disabled
    services.users.update("dora", disabled=True)
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(principal)
