"""Single sign-on users: created at their first login (or not, without onboarding), bound to the
provider's subject, their groups and admin standing as the provider says at each login, never taking
over a local or LDAP account; their CLI secret as a password, and what dies when it is replaced."""

from __future__ import annotations

import pytest

from dockyard.accounts.credentials import CredentialKind
from dockyard.accounts.directory import ExternalIdentity
from dockyard.accounts.interfaces import NoCLISecret, UserExists, UserNotFound, UserSource
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind
from tests.unit.accounts.fixtures import PASSWORD, Services
from tests.unit.accounts.test_authenticator import make


def identity(
    name: str = "erin", subject: str = "sub-erin", groups: tuple[str, ...] = (), admin: bool = False
) -> ExternalIdentity:
    return ExternalIdentity(name, f"{name}@example.com", name.title(), frozenset(groups), admin, subject)


def test_the_first_login_creates_the_user_and_later_ones_follow_the_provider(services: Services) -> None:
    authenticator = make(services)
    first = authenticator.single_sign_on(identity(groups=("devs", "ops"), admin=True), onboard=True)
    assert (first.name, first.is_admin, first.groups) == ("erin", True, frozenset({"devs", "ops"}))
    assert first.credential is not None and first.credential.kind is CredentialKind.OIDC
    user = services.users.get("erin")
    assert (user.source, user.directory_admin, user.email) == (UserSource.OIDC, True, "erin@example.com")
    services.groups.create("local-team")
    services.groups.add_user("local-team", "erin")
    again = authenticator.single_sign_on(identity(groups=("devs",)), onboard=True)
    # Removed from ops and from the admins at the provider: so here. The local group stays.
    assert (again.is_admin, again.groups) == (False, frozenset({"devs", "local-team"}))
    assert services.groups.get("devs").source is UserSource.OIDC


def test_another_subject_or_a_local_or_ldap_account_of_that_name_is_refused(services: Services) -> None:
    authenticator = make(services)
    authenticator.single_sign_on(identity(), onboard=True)
    with pytest.raises(UserExists, match="another single sign-on subject"):
        authenticator.single_sign_on(identity(subject="someone-else"), onboard=True)
    services.users.create("alice", PASSWORD)
    with pytest.raises(UserExists, match="a local user"):
        authenticator.single_sign_on(identity("alice", "sub-alice", admin=True), onboard=True)
    services.users.sync_directory_user(ExternalIdentity("dave", None, None, frozenset()))
    with pytest.raises(UserExists, match="an LDAP user"):
        authenticator.single_sign_on(identity("dave", "sub-dave"), onboard=True)
    assert services.users.get("alice").is_admin is False


def test_without_onboarding_only_accounts_an_administrator_made_log_in(services: Services) -> None:
    authenticator = make(services)
    with pytest.raises(UserNotFound):
        authenticator.single_sign_on(identity(), onboard=False)
    assert services.users.find("erin") is None
    services.users.create("erin", None, source=UserSource.OIDC)
    assert authenticator.single_sign_on(identity(), onboard=False).name == "erin"
    # Bound to the first subject that logged in with the name.
    with pytest.raises(UserExists):
        authenticator.single_sign_on(identity(subject="sub-other"), onboard=False)


def test_a_disabled_user_is_refused_and_their_sessions_end(services: Services) -> None:
    authenticator = make(services)
    principal = authenticator.single_sign_on(identity(), onboard=True)
    assert authenticator.reload(principal).name == "erin"
    services.users.update("erin", disabled=True)
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(principal)
    with pytest.raises(AuthenticationFailed):
        authenticator.single_sign_on(identity(), onboard=True)


def test_the_cli_secret_is_a_password_until_it_is_replaced(services: Services) -> None:
    authenticator = make(services)
    authenticator.single_sign_on(identity(groups=("devs",)), onboard=True)
    secret, _ = services.users.new_cli_secret("erin")
    assert secret.startswith("dyc_")
    login = authenticator.authenticate("ERIN", secret, "192.0.2.1")
    assert (login.name, login.groups) == ("erin", frozenset({"devs"}))
    assert login.credential is not None and login.credential.kind is CredentialKind.CLI_SECRET
    assert authenticator.reload(login).name == "erin"
    newer, _ = services.users.new_cli_secret("erin")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("erin", secret, "192.0.2.1")
    with pytest.raises(AuthenticationFailed):  # what the old secret handed out ends with it
        authenticator.reload(login)
    assert authenticator.authenticate("erin", newer, "192.0.2.1").name == "erin"
    services.users.update("erin", disabled=True)
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("erin", newer, "192.0.2.1")


def test_only_sso_users_have_a_cli_secret_and_it_is_no_one_elses_password(services: Services) -> None:
    authenticator = make(services)
    services.users.create("alice", PASSWORD)
    with pytest.raises(NoCLISecret):
        services.users.new_cli_secret("alice")
    authenticator.single_sign_on(identity(), onboard=True)
    secret, _ = services.users.new_cli_secret("erin")
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate("alice", secret, "192.0.2.1")
    # An OIDC login itself names no secret: a principal claiming one for a local user is dead.
    forged = Principal(
        PrincipalKind.USER,
        "alice",
        services.users.get("alice").id,
        credential=authenticator.single_sign_on(identity(), onboard=True).credential,
    )
    with pytest.raises(AuthenticationFailed):
        authenticator.reload(forged)


def test_a_provider_joins_and_leaves_directory_groups_never_local_ones(services: Services) -> None:
    # A local group's memberships are the administrators': the provider would not take one away again.
    authenticator = make(services)
    services.groups.create("ops")
    # A project membership names a group before anyone logged in: it is made as a directory group.
    services.groups.create("developers", UserSource.LDAP)
    principal = authenticator.single_sign_on(identity(groups=("ops", "developers", "devs")), onboard=True)
    assert principal.groups == frozenset({"developers", "devs"})
    assert services.groups.members("ops") == []
    later = authenticator.single_sign_on(identity(groups=("devs",)), onboard=True)
    assert later.groups == frozenset({"devs"})
    assert services.groups.members("developers") == []
