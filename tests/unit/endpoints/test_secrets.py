"""Endpoint credentials at rest: sealed under a key derived from the signing keys' passphrase with a
purpose of its own, bound to the endpoint's name."""

from __future__ import annotations

from dockyard.endpoints.secrets import PURPOSE, SecretBox, derive_key

SECRET = "dckr_pat_very-secret-value"


def test_a_sealed_secret_opens_and_does_not_show_the_secret() -> None:
    box = SecretBox(b"passphrase-one")
    sealed = box.seal("hub", SECRET)
    assert SECRET not in sealed and sealed.startswith("v1:")
    assert box.open("hub", sealed) == SECRET
    assert box.seal("hub", SECRET) != sealed  # a fresh nonce each time


def test_a_sealed_secret_is_bound_to_its_endpoint() -> None:
    box = SecretBox(b"passphrase-one")
    assert box.open("other", box.seal("hub", SECRET)) is None


def test_another_passphrase_does_not_open_it_an_older_one_does() -> None:
    sealed = SecretBox(b"datadir-secret").seal("hub", SECRET)
    assert SecretBox(b"http-secret").open("hub", sealed) is None
    assert SecretBox(b"http-secret", older=[b"datadir-secret", None]).open("hub", sealed) == SECRET


def test_garbage_does_not_open() -> None:
    box = SecretBox(b"p")
    for sealed in ("", "v1:", "v1:!!!", "v2:" + box.seal("hub", SECRET)[3:], box.seal("hub", SECRET)[:-4]):
        assert box.open("hub", sealed) is None


def test_the_key_is_derived_for_this_purpose_only() -> None:
    assert b"endpoint" in PURPOSE
    assert derive_key(b"p") != derive_key(b"q")
    assert len(derive_key(b"p")) == 32 and derive_key(b"p") != b"p".ljust(32, b"\0")
