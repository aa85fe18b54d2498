"""The token flow's pieces: the WWW-Authenticate parser and the token cache."""

from __future__ import annotations

import pytest

from dockyard.upstream.tokens import (
    EXPIRY_MARGIN,
    Challenge,
    TokenCache,
    find_challenge,
    parse_challenges,
    token_lifetime,
    token_of,
)


def test_docker_hub_challenge() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/alpine:pull",
            },
        )
    ]


def test_commas_inside_quotes_belong_to_the_value() -> None:
    (challenge,) = parse_challenges('Bearer realm="https://r/t",scope="repository:a/b:pull,push"')
    assert challenge.params["scope"] == "repository:a/b:pull,push"


def test_spaces_case_escapes_and_bare_tokens() -> None:
    (challenge,) = parse_challenges(
        'BEARER  Realm = "https://r/t?a=\\"b\\"" , Service=registry ,error=insufficient_scope'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": 'https://r/t?a="b"',
        "service": "registry",
        "error": "insufficient_scope",
    }


def test_several_challenges_in_one_header() -> None:
    challenges = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://r/t",service="s"')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[1].params == {"realm": "https://r/t", "service": "s"}
    assert find_challenge(['Basic realm="x"', 'Bearer realm="y"'], "bearer") == Challenge(
        "bearer", {"realm": "y"}
    )
    assert find_challenge(['Basic realm="x"'], "bearer") is None


@pytest.mark.parametrize("header", ["", "   ", ",", '"quoted"', 'Bearer realm="unterminated', "=x"])
def test_malformed_headers_do_not_raise(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.realm in (None, "")  # nothing half-parsed passes as a realm


def test_token_answers() -> None:
    assert token_of({"token": "t"}) == "t"
    assert token_of({"access_token": "a"}) == "a"
    assert token_of({"token": "", "access_token": "a"}) == "a"
    assert token_of({"token": 5}) is None
    assert token_lifetime({"expires_in": 300}) == 300
    # The spec: 60 seconds when omitted; nonsense is read as omitted.
    for answer in ({}, {"expires_in": 0}, {"expires_in": -5}, {"expires_in": "300"}, {"expires_in": True}):
        assert token_lifetime(answer) == 60


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    key = ("https://r/t", "s", "repository:a:pull")
    cache.put(key, "t1", 300)
    clock.now += 300 - EXPIRY_MARGIN - 0.5
    assert cache.get(key) == "t1"
    clock.now += 1
    assert cache.get(key) is None
    assert len(cache) == 0


def test_a_short_token_is_used_for_half_its_life() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    cache.put(("r", "s", ""), "t", 4)
    clock.now += 1.9
    assert cache.get(("r", "s", "")) == "t"
    clock.now += 0.2
    assert cache.get(("r", "s", "")) is None


def test_tokens_are_kept_per_scope_and_dropped_on_demand() -> None:
    cache = TokenCache(Clock())
    cache.put(("r", "s", "repository:a:pull"), "ta", 300)
    cache.put(("r", "s", "repository:b:pull"), "tb", 300)
    assert cache.get(("r", "s", "repository:a:pull")) == "ta"
    cache.drop(("r", "s", "repository:a:pull"))
    assert cache.get(("r", "s", "repository:a:pull")) is None
    assert cache.get(("r", "s", "repository:b:pull")) == "tb"
