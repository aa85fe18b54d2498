"""registry:2's htpasswd auth: bcrypt entries only, the file re-read when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import bcrypt
import pytest

from dockyard.auth.htpasswd import HtpasswdAuthenticator, parse_htpasswd
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind


def bcrypt_line(user: str, password: str, prefix: str = "$2y$") -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{prefix}{hashed[4:]}"  # htpasswd -B writes $2y$


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    path.write_text(
        "# registry users\n\n"
        + bcrypt_line("alice", "wonderland")
        + "\n"
        + bcrypt_line("bob", "builder", "$2b$")
        + "\n"
        + "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"  # sha1: not accepted, as in registry:2
        + "dave:$apr1$abc$def\n"
    )
    return path


def test_bcrypt_users_log_in(htpasswd: Path) -> None:
    auth = HtpasswdAuthenticator(htpasswd)
    assert auth.authenticate("alice", "wonderland") == Principal(PrincipalKind.USER, "alice")
    assert auth.authenticate("bob", "builder").name == "bob"


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice", "wrong"),
        ("alice", ""),
        ("nobody", "wonderland"),
        ("carol", "password"),
        ("dave", "x"),
        ("alice", "wonderland" + "x" * 100),
        ("# registry users", ""),
    ],
)
def test_wrong_unknown_and_non_bcrypt_all_fail_the_same_way(htpasswd: Path, user: str, password: str) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        HtpasswdAuthenticator(htpasswd).authenticate(user, password)
    assert caught.value.message == "authentication required"


def test_the_file_is_reread_when_it_changes(htpasswd: Path) -> None:
    auth = HtpasswdAuthenticator(htpasswd)
    auth.authenticate("alice", "wonderland")
    htpasswd.write_text(bcrypt_line("erin", "new") + "\n")
    os.utime(htpasswd, ns=(1, 1))  # a different mtime even within the filesystem's granularity
    assert auth.authenticate("erin", "new").name == "erin"
    with pytest.raises(AuthenticationFailed):
        auth.authenticate("alice", "wonderland")


def test_a_missing_file_lets_nobody_in(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationFailed):
        HtpasswdAuthenticator(tmp_path / "absent").authenticate("alice", "wonderland")


def test_parse_skips_malformed_lines() -> None:
    entries = parse_htpasswd("no-colon-here\n:$2y$04$abc\n" + bcrypt_line("ok", "pw") + "\n")
    assert list(entries) == ["ok"]
