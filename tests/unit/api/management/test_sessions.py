"""The signed session cookie: round trip, tampering, expiry, secrets."""

from __future__ import annotations

import base64
import json

import pytest

from dockyard.api.management.sessions import SessionCodec

SECRET = b"s" * 32


def test_a_cookie_reads_back_as_the_session_it_was_issued_for() -> None:
    codec = SessionCodec(SECRET, max_age=60)
    value, session = codec.issue("user", "alice", 7, now=1000)
    assert codec.read(value, now=1059) == session
    assert session.account_id == 7 and session.expires_at == 1060 and len(session.csrf_token) >= 32


def test_expired_cookies_are_refused() -> None:
    codec = SessionCodec(SECRET, max_age=60)
    value, _ = codec.issue("user", "alice", 7, now=1000)
    assert codec.read(value, now=1060) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),  # signature changed
        lambda v: v.split(".")[0],  # no signature
        lambda v: "." + v.split(".")[1],  # no body
        lambda v: v + "é",  # not ASCII
        lambda v: "x" * 10,
        lambda v: "",
    ],
)
def test_damaged_cookies_are_refused(damage: object) -> None:
    codec = SessionCodec(SECRET)
    value, _ = codec.issue("user", "alice", 7)
    assert codec.read(damage(value)) is None  # type: ignore[operator]


def test_a_body_changed_under_the_same_signature_is_refused() -> None:
    codec = SessionCodec(SECRET)
    value, _ = codec.issue("user", "bob", 3)
    _, _, signature = value.partition(".")
    body = {"k": "user", "n": "admin", "i": 1, "e": 2**40, "c": "x"}
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    assert codec.read(f"{forged}.{signature}") is None


def test_another_secret_does_not_accept_the_cookie_and_short_secrets_are_refused() -> None:
    value, _ = SessionCodec(SECRET).issue("user", "alice", 7)
    assert SessionCodec(b"t" * 32).read(value) is None
    with pytest.raises(ValueError):
        SessionCodec(b"short")
