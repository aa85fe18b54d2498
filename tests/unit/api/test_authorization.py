"""One reading of the Authorization header for /v2, /token, /api/v1 and /metrics."""

from __future__ import annotations

import pytest

from dockyard.api.authorization import (
    MAX_AUTHORIZATION_BYTES,
    Authorization,
    AuthorizationTooLarge,
    parse_authorization,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Basic YWxpY2U6c2VjcmV0", Authorization(b"basic", b"YWxpY2U6c2VjcmV0")),
        ("bAsIc   YWxpY2U6c2VjcmV0  ", Authorization(b"basic", b"YWxpY2U6c2VjcmV0")),
        ("Bearer a.b.c", Authorization(b"bearer", b"a.b.c")),
        ("Basic", Authorization(b"basic", b"")),
        ("Digest x", Authorization(b"digest", b"x")),
        ("Basic \xe9t\xe9", Authorization(b"basic", "\xe9t\xe9".encode("latin-1"))),  # bytes as sent
    ],
)
def test_scheme_is_case_insensitive_and_credentials_are_the_bytes_sent(
    header: bytes | str, expected: Authorization
) -> None:
    assert parse_authorization(header) == expected


def test_only_non_empty_credentials_count_as_basic_or_bearer() -> None:
    assert not Authorization(b"basic", b"").is_basic and not Authorization(b"bearer", b"").is_bearer
    assert Authorization(b"basic", b"x").is_basic and Authorization(b"bearer", b"x").is_bearer


def test_no_header_is_none_and_an_oversized_one_is_refused_before_it_is_split() -> None:
    assert parse_authorization(None) is None
    assert parse_authorization("Bearer " + "a" * (MAX_AUTHORIZATION_BYTES - 7)) is not None
    with pytest.raises(AuthorizationTooLarge):
        parse_authorization("Bearer " + "a" * (MAX_AUTHORIZATION_BYTES - 6))
