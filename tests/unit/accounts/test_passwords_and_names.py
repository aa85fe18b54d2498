"""Password hashing and policy; the name rules for users, groups and robots."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from dockyard.accounts import passwords
from dockyard.accounts.credentials import PERSONAL_TOKEN_PREFIX, hash_secret, new_secret, secret_matches
from dockyard.accounts.interfaces import InvalidName, WeakPassword
from dockyard.accounts.names import (
    is_robot_name,
    robot_full_name,
    split_robot_name,
    validate_group_name,
    validate_username,
)
from dockyard.accounts.passwords import check_password_policy, hash_password, needs_rehash, verify_password


def test_hash_is_argon2id_and_verifies_only_the_right_password() -> None:
    stored = hash_password("s3cret-password")
    assert stored.startswith("$argon2id$")
    assert "s3cret-password" not in stored
    assert verify_password(stored, "s3cret-password")
    assert not verify_password(stored, "s3cret-passworD")
    assert not verify_password(stored, "")


def test_two_hashes_of_one_password_differ() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_missing_or_garbage_hash_never_verifies() -> None:
    assert not verify_password(None, "dockyard-dummy-password")  # the dummy's own password
    assert not verify_password("not-a-hash", "anything")
    assert not verify_password(hash_password("x" * 8), "x" * 5000)


def test_hashes_made_with_other_parameters_ask_for_a_rehash() -> None:
    assert needs_rehash(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw-pw-pw-pw"))
    assert not needs_rehash(hash_password("pw-pw-pw-pw"))


@pytest.fixture
def production_hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The hasher a registry runs with: not the suite's cheap one (tests/conftest.py)."""
    monkeypatch.delenv(passwords.INSECURE_TEST_HASHES_ENV)
    monkeypatch.setattr(passwords, "_hasher", None)
    yield
    monkeypatch.setattr(passwords, "_hasher", None)  # the next test makes the suite's again


def test_the_suite_hashes_cheaply_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passwords, "_hasher", None)
    assert hash_password("pw-pw-pw-pw").startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert "never on a registry" in caplog.text


@pytest.mark.usefixtures("production_hasher")
def test_hashes_take_7_mib_and_5_passes(caplog: pytest.LogCaptureFixture) -> None:
    """OWASP's 7 MiB / 5 passes set, as strong as 19 MiB / 2 passes with a smaller block per hash in the
    server's memory; a hash of the older 19 MiB / 2 passes is replaced at the next login."""
    assert hash_password("pw-pw-pw-pw").startswith("$argon2id$v=19$m=7168,t=5,p=1$")
    assert needs_rehash(PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash("pw-pw-pw-pw"))
    assert needs_rehash(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw-pw-pw-pw"))
    assert "never on a registry" not in caplog.text


@pytest.mark.parametrize("password", ["", "short", "1234567", "x" * 1025])
def test_policy_refuses_short_and_huge_passwords(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_password_policy(password)


def test_policy_refuses_the_username_as_password() -> None:
    with pytest.raises(WeakPassword):
        check_password_policy("Alice-the-user", "alice-the-user")
    check_password_policy("eight chars", "alice")


@pytest.mark.parametrize(
    "password",
    ["password", "Password1", "Summer2024!", "p@ssw0rd123", "qwertyuiop", "iloveyou123", "admin123456",
     "alice2024!", "a" * 1024, "abcabcabcabcabc"],
)  # fmt: skip
def test_policy_refuses_common_and_guessable_passwords(password: str) -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_policy(password, "alice")
    assert caught.value.message.startswith("the password is too easy to guess")


def test_policy_says_why_a_password_is_weak() -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_policy("password")
    assert "common password" in caught.value.message


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "the-right-password-1",
        "Tr0ub4dor&3-extra-words",
        "kX9vR2mQ7tLp4Zw8bN3c",  # random
    ],
)
def test_policy_accepts_strong_passwords(password: str) -> None:
    check_password_policy(password, "alice")


def test_only_the_start_of_a_very_long_password_is_judged() -> None:
    """zxcvbn's time grows fast with the length (1024 repeated letters took a minute): the first 72
    characters are judged, so the check stays quick for any input the policy lets through."""
    check_password_policy(secrets.token_urlsafe(54) + "a" * 900)
    with pytest.raises(WeakPassword):
        check_password_policy("a" * 900 + secrets.token_urlsafe(54))


@pytest.mark.parametrize("name", ["alice", "a", "Alice.Smith", "bob@example.org", "ci-bot_2", "a" * 255])
def test_valid_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize(
    "name", ["", "robot$ci", "al:ice", "al ice", "-alice", ".alice", "ali\nce", "a" * 256, "álice", "a/b"]
)
def test_invalid_usernames(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_username(name)


def test_group_names_may_be_dns_but_not_blank_or_control_text() -> None:
    assert validate_group_name("cn=devs,ou=groups,dc=example,dc=org")
    for bad in ["", " devs", "devs\n", "x" * 513]:
        with pytest.raises(InvalidName):
            validate_group_name(bad)


def test_robot_names_follow_harbor() -> None:
    assert robot_full_name("ci", None) == "robot$ci"
    assert robot_full_name("ci", "team") == "robot$team+ci"
    assert split_robot_name("robot$team+ci") == ("ci", "team")
    assert split_robot_name("robot$ci") == ("ci", None)
    assert is_robot_name("robot$ci") and not is_robot_name("robots")


@pytest.mark.parametrize("full", ["robot$", "robot$+ci", "robot$team+", "robot$Team+ci", "robot$a+b+c", "ci"])
def test_bad_robot_names(full: str) -> None:
    with pytest.raises(InvalidName):
        split_robot_name(full)


@pytest.mark.parametrize("name", ["CI", "c i", "ci+x", "ci$", ""])
def test_bad_robot_short_names(name: str) -> None:
    with pytest.raises(InvalidName):
        robot_full_name(name, None)


def test_secrets_are_random_prefixed_and_checked_by_hash() -> None:
    first, second = new_secret(PERSONAL_TOKEN_PREFIX), new_secret(PERSONAL_TOKEN_PREFIX)
    assert first != second and first.startswith("dyp_") and len(first) >= 4 + 43
    assert secret_matches(first, hash_secret(first))
    assert not secret_matches(second, hash_secret(first))
