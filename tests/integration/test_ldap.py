"""LDAPDirectory against a real OpenLDAP slapd (tests/support/slapd.py has the tree and its passwords)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dockyard.accounts.directory import DirectoryUnavailable, ExternalIdentity
from dockyard.accounts.ldap import LDAPDirectory
from dockyard.app import build_services, create_app
from dockyard.auth.interfaces import DirectoryProvider
from dockyard.bootstrap import first_admin
from dockyard.cli.cert import make_certificates
from dockyard.config.settings import LDAPSettings
from tests.support.inprocess import ADMIN as INPROCESS_ADMIN
from tests.support.inprocess import BASE_URL, TestClient, in_process_settings
from tests.support.portal import PortalBrowser
from tests.support.server import free_port
from tests.support.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    BASE_DN,
    GROUPS_DN,
    PEOPLE_DN,
    READER_DN,
    READER_PASSWORD,
    UNNAMED_LOOPBACK,
    USERS,
    RunningSlapd,
    start_slapd,
)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSlapd]:
    """One slapd with TLS on (ldap:// with StartTLS, and ldaps://) for the module."""
    running = start_slapd(tmp_path_factory.mktemp("slapd"), tls=True)
    yield running
    running.stop()


def make_settings(slapd: RunningSlapd, **overrides: Any) -> LDAPSettings:
    values: dict[str, Any] = {
        "url": slapd.url,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "user_base_dn": BASE_DN,
        "group_base_dn": GROUPS_DN,
        "admin_groups": ["registry-admins"],
        "timeout": 2,
    }
    return LDAPSettings(**{**values, **overrides})


def directory(slapd: RunningSlapd, **overrides: Any) -> LDAPDirectory:
    return LDAPDirectory(make_settings(slapd, **overrides))


def password(uid: str) -> str:
    return USERS[uid].password


# --- passwords ----------------------------------------------------------------------------------
def test_right_password_gives_the_directory_identity(slapd: RunningSlapd) -> None:
    provider: DirectoryProvider = directory(slapd)  # the auth contract, importable from auth too

    identity = provider.verify("alice", password("alice"))

    assert identity == ExternalIdentity(
        username="alice",
        email="alice@example.org",
        display_name="Alice Liddell",
        groups=frozenset({"developers", "registry-admins"}),
        is_admin=True,
    )


def test_username_case_gives_the_directory_spelling(slapd: RunningSlapd) -> None:
    identity = directory(slapd).verify("ALICE", password("alice"))

    assert identity is not None and identity.username == "alice"


def test_login_by_another_attribute_gives_the_username(slapd: RunningSlapd) -> None:
    provider = directory(slapd, user_filter="(|(uid={username})(mail={username}))")

    identity = provider.verify("bob@example.org", password("bob"))

    assert identity is not None and identity.username == "bob"


def test_wrong_password_is_refused(slapd: RunningSlapd) -> None:
    provider = directory(slapd)

    assert provider.verify("alice", "not-her-password") is None
    assert provider.verify("alice", password("bob")) is None  # another user's password


def test_unknown_user_is_refused(slapd: RunningSlapd) -> None:
    assert directory(slapd).verify("mallory", password("alice")) is None


def test_empty_password_is_refused_not_an_anonymous_bind(slapd: RunningSlapd) -> None:
    # This slapd, like AD, answers a DN with an empty password as a successful anonymous bind.
    result = subprocess.run(
        ["ldapwhoami", "-x", "-H", slapd.url, "-D", USERS["alice"].dn, "-w", ""],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "anonymous"

    assert directory(slapd).verify("alice", "") is None


def test_empty_username_is_refused(slapd: RunningSlapd) -> None:
    assert directory(slapd).verify("", password("alice")) is None


def test_service_account_may_be_anonymous(slapd: RunningSlapd) -> None:
    identity = directory(slapd, bind_dn=None, bind_password=None).verify("bob", password("bob"))

    assert identity is not None and identity.groups == {"developers"}


def test_rejected_service_account_is_unavailable_not_a_wrong_password(slapd: RunningSlapd) -> None:
    provider = directory(slapd, bind_password="not-the-reader-password")

    with pytest.raises(DirectoryUnavailable):
        provider.verify("alice", password("alice"))


# --- the user filter ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("user_filter", "username"),
    [
        ("(uid={username})", "*"),
        ("(uid={username})", "al*"),  # unescaped, matches alice alone
        ("(uid={username})", "alice)(uid=*"),  # unescaped, the first filter would be (uid=alice)
        ("(&(objectClass=inetOrgPerson)(uid={username}))", "*)(uid=alice"),  # unescaped, matches alice alone
        ("(&(objectClass=inetOrgPerson)(uid={username}))", "alice)(|(uid=*"),
        ("(uid={username})", "alice\\00"),
        ("(uid={username})", "\\2a"),
    ],
)
def test_filter_injection_finds_nobody(slapd: RunningSlapd, user_filter: str, username: str) -> None:
    # With alice's password: a filter that matched alice would log in as her.
    assert directory(slapd, user_filter=user_filter).verify(username, password("alice")) is None


def test_filter_characters_in_a_name_match_literally(slapd: RunningSlapd) -> None:
    erin = USERS["erin"]  # cn "Erin (QA) Smith, Jr"

    identity = directory(slapd, user_filter="(cn={username})").verify(erin.cn, erin.password)

    assert identity is not None and identity.email == "erin@example.org"


def test_user_found_twice_is_refused(slapd: RunningSlapd) -> None:
    # dave is in ou=people and ou=contractors: the whole tree is ambiguous, ou=people is not.
    assert directory(slapd).verify("dave", password("dave")) is None
    identity = directory(slapd, user_base_dn=PEOPLE_DN).verify("dave", password("dave"))
    assert identity is not None and identity.display_name == "Dave People"


# --- groups -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uid", "groups", "is_admin"),
    [
        ("alice", {"developers", "registry-admins"}, True),
        ("bob", {"developers"}, False),
        ("carol", set(), False),
        ("erin", {"qa"}, False),  # her DN has a comma and parentheses: escaped in the group filter
    ],
)
def test_groups_and_admin_mapping(slapd: RunningSlapd, uid: str, groups: set[str], is_admin: bool) -> None:
    identity = directory(slapd).verify(uid, password(uid))

    assert identity is not None
    assert identity.groups == groups
    assert identity.is_admin is is_admin


def test_admin_groups_match_whatever_the_case(slapd: RunningSlapd) -> None:
    provider = directory(slapd, admin_groups=["Developers"])

    bob = provider.verify("bob", password("bob"))
    carol = provider.verify("carol", password("carol"))

    assert bob is not None and bob.is_admin
    assert carol is not None and not carol.is_admin


def test_group_filter_by_username(slapd: RunningSlapd) -> None:
    group_filter = f"(member=uid={{username}},{PEOPLE_DN})"

    identity = directory(slapd, group_filter=group_filter).verify("bob", password("bob"))

    assert identity is not None and identity.groups == {"developers"}


def test_no_group_base_means_no_groups_and_no_admin(slapd: RunningSlapd) -> None:
    identity = directory(slapd, group_base_dn=None).verify("alice", password("alice"))

    assert identity is not None and identity.groups == frozenset() and not identity.is_admin


# --- TLS ----------------------------------------------------------------------------------------
def test_ldaps_with_the_ca(slapd: RunningSlapd) -> None:
    assert slapd.certs is not None and slapd.ldaps_url is not None
    provider = directory(slapd, url=slapd.ldaps_url, ca_file=slapd.certs.ca_cert)

    identity = provider.verify("alice", password("alice"))

    assert identity is not None and identity.is_admin
    assert provider.verify("alice", "wrong") is None


def test_starttls_with_the_ca(slapd: RunningSlapd) -> None:
    assert slapd.certs is not None
    provider = directory(slapd, starttls=True, ca_file=slapd.certs.ca_cert)

    identity = provider.verify("bob", password("bob"))

    assert identity is not None and identity.groups == {"developers"}


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_a_server_signed_by_another_ca_is_refused(slapd: RunningSlapd, tmp_path: Path, mode: str) -> None:
    other_ca = make_certificates("127.0.0.1", tmp_path / "other").ca_cert
    url = slapd.ldaps_url if mode == "ldaps" else slapd.url
    provider = directory(slapd, url=url, starttls=mode == "starttls", ca_file=other_ca)

    with pytest.raises(DirectoryUnavailable):
        provider.verify("alice", password("alice"))


def test_without_a_ca_file_the_system_store_does_not_trust_a_private_ca(slapd: RunningSlapd) -> None:
    with pytest.raises(DirectoryUnavailable):
        directory(slapd, url=slapd.ldaps_url).verify("alice", password("alice"))


def test_a_certificate_for_another_host_is_refused(slapd: RunningSlapd) -> None:
    # slapd also listens on 127.0.0.2, a name its certificate does not carry.
    assert slapd.certs is not None and slapd.ldaps_url is not None
    url = slapd.ldaps_url.replace("127.0.0.1", UNNAMED_LOOPBACK)
    provider = directory(slapd, url=url, ca_file=slapd.certs.ca_cert)

    with pytest.raises(DirectoryUnavailable):
        provider.verify("alice", password("alice"))


def test_starttls_against_a_server_without_tls(tmp_path: Path) -> None:
    plain = start_slapd(tmp_path / "plain", tls=False)
    try:
        ca = make_certificates("127.0.0.1", tmp_path / "certs").ca_cert
        assert directory(plain).verify("bob", password("bob")) is not None  # the server itself works

        with pytest.raises(DirectoryUnavailable):
            directory(plain, starttls=True, ca_file=ca).verify("bob", password("bob"))
    finally:
        plain.stop()


# --- the directory is down ----------------------------------------------------------------------
def test_nothing_listening_is_unavailable(slapd: RunningSlapd) -> None:
    provider = directory(slapd, url=f"ldap://127.0.0.1:{free_port()}")

    with pytest.raises(DirectoryUnavailable):
        provider.verify("alice", password("alice"))


def test_a_stopped_directory_is_unavailable(tmp_path: Path) -> None:
    running = start_slapd(tmp_path / "stopping", tls=False)
    provider = directory(running)
    try:
        assert provider.verify("carol", password("carol")) is not None
    finally:
        running.stop()

    with pytest.raises(DirectoryUnavailable):
        provider.verify("carol", password("carol"))


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_a_server_that_never_answers_times_out_as_unavailable(slapd: RunningSlapd, scheme: str) -> None:
    with silent_server() as port:
        provider = directory(slapd, url=f"{scheme}://127.0.0.1:{port}", timeout=1)
        started = time.monotonic()

        with pytest.raises(DirectoryUnavailable):
            provider.verify("alice", password("alice"))

        assert time.monotonic() - started < 5


# --- many threads, one provider -----------------------------------------------------------------
def test_one_provider_serves_concurrent_logins(slapd: RunningSlapd) -> None:
    provider = directory(slapd)
    attempts = [(uid, password(uid)) for uid in ("alice", "bob", "carol", "erin")] * 10
    attempts += [("alice", "wrong")] * 10

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda attempt: provider.verify(*attempt), attempts))

    for (uid, given), result in zip(attempts, results, strict=True):
        if given == "wrong":
            assert result is None
        else:
            assert result is not None and result.username == uid


# --- configuration mistakes are refused up front ------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"url": "http://127.0.0.1:389"}, "url"),
        ({"url": "ldaps://127.0.0.1:636", "starttls": True}, "starttls"),
        ({"bind_password": None}, "bind_password"),
        ({"bind_password": ""}, "bind_password"),
        ({"user_filter": "(uid=alice)"}, "user_filter"),
        ({"user_filter": "(uid={username}"}, "user_filter"),
        ({"group_filter": "(objectClass=groupOfNames)"}, "group_filter"),
        ({"ca_file": "/nonexistent/ca.crt"}, "ca_file"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides: dict[str, Any], key: str) -> None:
    values: dict[str, Any] = {
        "url": "ldap://127.0.0.1:389",
        "bind_dn": ADMIN_DN,
        "bind_password": ADMIN_PASSWORD,
        "user_base_dn": BASE_DN,
        "group_base_dn": GROUPS_DN,
    }
    with pytest.raises(ValueError, match=f"auth.ldap.{key}"):
        LDAPDirectory(LDAPSettings(**{**values, **overrides}))


@contextmanager
def silent_server() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never says a word (a hung directory)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:  # timeout: look at the stop flag again
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()
        for connection in accepted:
            connection.close()


# --- the administrator's "test" (POST /api/v1/system/ldap/test, the portal's sign-in page) ---------
def test_the_check_binds_reads_the_base_and_finds_a_user_with_groups(slapd: RunningSlapd) -> None:
    plain = {"ok": True, "error": None, "user_dn": None, "groups": [], "admin": False}
    assert directory(slapd).check() == plain
    found = directory(slapd).check("alice")
    assert found["ok"] and found["user_dn"] == USERS["alice"].dn
    assert (found["groups"], found["admin"]) == (["developers", "registry-admins"], True)


@pytest.mark.parametrize(
    ("overrides", "username", "said"),
    [
        ({"bind_password": "not-the-reader-password"}, None, "refused to bind the service account"),
        ({"user_base_dn": f"ou=nowhere,{BASE_DN}"}, None, "refused a search under ou=nowhere"),
        ({}, "mallory", "matches 'mallory'"),
        ({"url": "ldap://127.0.0.1:9"}, None, "LDAP"),  # nothing listens there
    ],
    ids=["service-account", "user-base", "unknown-user", "unreachable"],
)
def test_the_check_says_which_step_failed_and_never_the_password(
    slapd: RunningSlapd, overrides: dict[str, Any], username: str | None, said: str
) -> None:
    found = directory(slapd, **overrides).check(username)
    assert found["ok"] is False and said in found["error"], found
    assert READER_PASSWORD not in found["error"]


def test_the_sign_in_page_shows_the_settings_and_tests_the_directory(
    slapd: RunningSlapd, tmp_path: Path
) -> None:
    ldap = {
        "url": slapd.url, "bind_dn": READER_DN, "bind_password": READER_PASSWORD, "user_base_dn": BASE_DN,
        "group_base_dn": GROUPS_DN, "admin_groups": ["registry-admins"], "timeout": 2,
    }
    settings = in_process_settings(tmp_path, {"auth": {"ldap": ldap}})
    services = build_services(settings)
    first_admin(settings, services.db, INPROCESS_ADMIN[1])
    app = create_app(services)
    with TestClient(app, base_url=BASE_URL) as api:
        shown = api.get("/api/v1/system/sign-in", auth=INPROCESS_ADMIN)
        assert shown.status_code == 200 and shown.json()["oidc"] is None
        assert shown.json()["ldap"]["bind_password_set"] is True and READER_PASSWORD not in shown.text
        tested = api.post("/api/v1/system/ldap/test", json={"username": "alice"}, auth=INPROCESS_ADMIN)
        assert tested.json()["ok"] and tested.json()["admin"] is True
        assert api.post("/api/v1/system/ldap/test", auth=("bob", password("bob"))).status_code == 403
        with PortalBrowser(BASE_URL, TestClient(app, base_url=BASE_URL)) as admin:
            assert admin.login(*INPROCESS_ADMIN).status_code == 303
            page = admin.get("/ui/admin/sign-in")
            assert page.status_code == 200 and READER_DN in page.text
            assert READER_PASSWORD not in page.text
            assert "Single sign-on is not configured" in page.text
            unsigned = admin.submit("/ui/admin/sign-in/ldap-test", {"username": "alice"}, csrf=None)
            assert unsigned.status_code == 403
            result = admin.submit("/ui/admin/sign-in/ldap-test", {"username": "alice"})
            assert result.status_code == 200 and USERS["alice"].dn in result.text
            assert "registry-admins" in result.text and READER_PASSWORD not in result.text
            evil = {"username": '"><img src=x onerror=alert(1)>'}
            hostile = admin.submit("/ui/admin/sign-in/ldap-test", evil)
            assert hostile.status_code == 200 and "It failed" in hostile.text
            assert "<img src=x" not in hostile.text and "&lt;img src=x" in hostile.text
            assert admin.submit("/ui/admin/sign-in/oidc-test").status_code == 404  # not configured
        with PortalBrowser(BASE_URL, TestClient(app, base_url=BASE_URL)) as bob:  # a directory user
            assert bob.login("bob", password("bob")).status_code == 303
            assert bob.get("/ui/admin/sign-in").status_code == 403
            assert bob.submit("/ui/admin/sign-in/ldap-test", {"username": "alice"}).status_code == 403
