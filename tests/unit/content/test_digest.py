"""Digests against the OCI image spec (descriptor.md, "Digests").

digest              ::= algorithm ":" encoded
algorithm           ::= algorithm-component (algorithm-separator algorithm-component)*
algorithm-component ::= [a-z0-9]+
algorithm-separator ::= [+._-]
encoded             ::= [a-zA-Z0-9=_-]+
sha256: encoded MUST match /[a-f0-9]{64}/; sha512: /[a-f0-9]{128}/ (no uppercase).
"""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.content.digest import (
    Digest,
    compute_digest,
    digest_of,
    looks_like_digest,
    new_hasher,
    parse_digest,
)
from dockyard.errors import DigestInvalid, UnsupportedDigest

# The grammar as the spec writes it, kept apart from the implementation's copy on purpose.
SPEC_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
SHA256_HEX = "a" * 64
SHA512_HEX = "b" * 128


@pytest.mark.parametrize(
    ("value", "algorithm", "encoded"),
    [
        (f"sha256:{SHA256_HEX}", "sha256", SHA256_HEX),
        (f"sha512:{SHA512_HEX}", "sha512", SHA512_HEX),
        ("sha256:" + "0123456789abcdef" * 4, "sha256", "0123456789abcdef" * 4),
    ],
)
def test_registered_algorithms_parse(value: str, algorithm: str, encoded: str) -> None:
    digest = parse_digest(value)
    assert digest == Digest(algorithm, encoded)
    assert str(digest) == value
    assert looks_like_digest(value)


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "a" * 63,  # one short
        "sha256:" + "a" * 65,  # one long
        "sha256:" + "A" * 64,  # the spec forbids uppercase hex
        "sha256:" + "a" * 63 + "F",
        "sha256:" + "g" * 64,  # not hex
        "sha512:" + "b" * 127,
        "sha512:" + "b" * 129,
        "sha512:" + SHA256_HEX,  # a sha256-length value under sha512
        "sha256:" + SHA512_HEX,
        "sha512:" + "B" * 128,
    ],
)
def test_registered_algorithm_with_wrong_encoded_part_is_invalid(value: str) -> None:
    with pytest.raises(DigestInvalid) as caught:
        parse_digest(value)
    # Not "unsupported": the algorithm is known, the value is wrong.
    assert not isinstance(caught.value, UnsupportedDigest)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + SHA256_HEX,
        SHA256_HEX,
        "SHA256:" + SHA256_HEX,  # algorithm-component is lowercase only
        "Sha256:" + SHA256_HEX,
        "sha256::" + SHA256_HEX,
        "sha256:" + SHA256_HEX + ":",
        " sha256:" + SHA256_HEX,
        "sha256:" + SHA256_HEX + " ",
        "sha256:" + SHA256_HEX + "\n",  # `$` must not accept a trailing newline
        "sha256 :" + SHA256_HEX,
        "+sha256:" + SHA256_HEX,  # separators only between components
        "sha256+:" + SHA256_HEX,
        "sha256..x:" + SHA256_HEX,
        "sha256/x:" + SHA256_HEX,
        "sha256:" + "a" * 32 + "/" + "a" * 31,
        "sha256:" + "a" * 32 + "+" + "a" * 31,  # '+' is not in the encoded alphabet
        "sha256:" + "a" * 63 + "é",
        "sha256:" + "٣" * 64,  # Arabic-Indic digits are not [0-9]
    ],
)
def test_malformed_digests_are_invalid_not_unsupported(value: str) -> None:
    assert not looks_like_digest(value)
    with pytest.raises(DigestInvalid) as caught:
        parse_digest(value)
    assert not isinstance(caught.value, UnsupportedDigest)


@pytest.mark.parametrize(
    "value",
    [
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha384:" + "a" * 96,
        "blake3:" + SHA256_HEX,
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "a.b_c-d+e:x=",
        "sha3_256:" + SHA256_HEX,
        "sha1:0",
    ],
)
def test_grammatical_digests_with_unknown_algorithms_are_unsupported(value: str) -> None:
    assert looks_like_digest(value)
    with pytest.raises(UnsupportedDigest, match="unsupported digest algorithm"):
        parse_digest(value)


def test_unsupported_digest_is_a_kind_of_invalid_digest() -> None:
    # Callers that only catch DigestInvalid still refuse unknown algorithms.
    assert issubclass(UnsupportedDigest, DigestInvalid)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_compute_digest_matches_hashlib(algorithm: str) -> None:
    data = b"a small string"
    expected = hashlib.new(algorithm, data).hexdigest()
    assert compute_digest(data, algorithm) == Digest(algorithm, expected)
    assert digest_of(data, algorithm) == f"{algorithm}:{expected}"


def test_sha256_is_the_default_algorithm() -> None:
    assert digest_of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert compute_digest(b"").algorithm == "sha256"
    assert new_hasher().name == "sha256"


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha384", "sha3_256", "blake2b", "nope"])
def test_hashing_functions_refuse_unsupported_algorithms(algorithm: str) -> None:
    # A digest the registry could not later parse must never be produced.
    with pytest.raises(UnsupportedDigest):
        new_hasher(algorithm)
    with pytest.raises(UnsupportedDigest):
        compute_digest(b"x", algorithm)
    with pytest.raises(UnsupportedDigest):
        digest_of(b"x", algorithm)


def test_digest_hasher_streams_to_the_same_digest() -> None:
    data = bytes(range(256)) * 1000
    digest = compute_digest(data, "sha512")
    hasher = parse_digest(str(digest)).hasher()
    for start in range(0, len(data), 4096):
        hasher.update(data[start : start + 4096])
    assert hasher.hexdigest() == digest.encoded


@given(st.binary(max_size=4096), st.sampled_from(["sha256", "sha512"]))
def test_digest_of_round_trips_through_parse_digest(data: bytes, algorithm: str) -> None:
    text = digest_of(data, algorithm)
    parsed = parse_digest(text)
    assert parsed == compute_digest(data, algorithm)
    assert str(parsed) == text
    assert looks_like_digest(text)


@given(st.from_regex(SPEC_DIGEST, fullmatch=True))
def test_every_grammatical_digest_is_recognised(value: str) -> None:
    assert looks_like_digest(value)
    try:
        digest = parse_digest(value)
    except DigestInvalid:
        return  # unknown algorithm, or a registered one with a wrong-length value
    assert str(digest) == value
    assert digest.algorithm in ("sha256", "sha512")


@given(st.text(alphabet=st.sampled_from("sha256:0af+._-=AZ/ \n\té"), max_size=80))
def test_parse_digest_accepts_only_the_grammar(value: str) -> None:
    assert looks_like_digest(value) == (SPEC_DIGEST.fullmatch(value) is not None)
    try:
        digest = parse_digest(value)
    except DigestInvalid:
        return
    assert SPEC_DIGEST.fullmatch(value)
    assert str(digest) == value
