"""Repository names, tags and references against the OCI distribution spec (spec.md, "Pulling manifests").

<name>      MUST match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*
            (clients limit host + "/" + name to 255 characters; dockyard caps the name at 255)
<reference> as a tag: at most 128 characters, [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.content.digest import Digest
from dockyard.content.reference import is_valid_tag, parse_reference, validate_name, validate_tag
from dockyard.errors import DigestInvalid, NameInvalid, TagInvalid, UnsupportedDigest

# Copied from the spec text, not from the implementation.
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
SHA256 = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "9a",
        "ubuntu",
        "library/ubuntu",
        "a/b/c/d/e/f",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a--b",
        "a-----b",
        "a.b_c__d-e--f",
        "my.registry.example/team_x/app--v2",
        "0/1/2",
        "a" * 255,
        "/".join(["abc"] * 64),  # 255 characters over many components
    ],
)
def test_valid_names(name: str) -> None:
    assert len(name) <= 255
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Library/ubuntu",
        "library/Ubuntu",
        "a" * 256,
        "/".join(["abc"] * 64) + "d",  # 256 characters, otherwise valid
        # separators: only '.', '_', '__' and runs of '-'
        "a___b",
        "a..b",
        "a._b",
        "a_.b",
        "a-_b",
        "a_-b",
        "a.-b",
        "a-.b",
        # separators never lead or trail a component
        ".a",
        "a.",
        "_a",
        "a_",
        "__a",
        "-a",
        "a-",
        "a/.b",
        "a./b",
        "a/-b",
        "a-/b",
        # empty components
        "/a",
        "a/",
        "a//b",
        "/",
        ".",
        "..",
        "a/../b",
        "a/./b",
        # characters outside the grammar
        "a b",
        "a\tb",
        "a:b",
        "a@b",
        "a+b",
        "a\\b",
        "a%2fb",
        "é",
        "café/app",
        "\uff41pp",  # fullwidth "a"
        "a\x00",
        "a\n",  # `$` must not accept a trailing newline
        "\na",
        "a/b\n",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        validate_name(name)


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1.0.0", "1", "_", "_hidden", "A", "UPPER_lower-1.2", "a" * 128, "x-" * 64, "0" + "." * 127],
)
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)
    assert validate_tag(tag) == tag
    assert parse_reference(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "a" * 129,
        ".hidden",
        "-v1",
        "a/b",
        "a b",
        "tag+build",
        "tag\n",
        "\ntag",
        "é",
        "v1.0\x00",
        "a" * 128 + "\n",
    ],
)
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)
    with pytest.raises(TagInvalid):
        validate_tag(tag)
    with pytest.raises(TagInvalid):
        parse_reference(tag)


def test_digest_reference_parses_to_a_digest() -> None:
    reference = parse_reference(SHA256)
    assert reference == Digest("sha256", "0123456789abcdef" * 4)


@pytest.mark.parametrize(
    "reference",
    [
        "sha256:XYZ",  # digest-shaped but not a digest
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        SHA256 + "\n",
        "sha256:",
        "tag:with:colons",
    ],
)
def test_references_with_a_colon_are_never_tags(reference: str) -> None:
    # A tag cannot hold ':', so such a reference is a (bad) digest, not a bad tag.
    with pytest.raises(DigestInvalid):
        parse_reference(reference)


def test_unknown_digest_algorithm_reference_is_unsupported() -> None:
    with pytest.raises(UnsupportedDigest):
        parse_reference("md5:d41d8cd98f00b204e9800998ecf8427e")


NAME_ALPHABET = st.sampled_from([*"ab09._-/", "__", "--", "A", "\n", "é", " ", ":"])


@given(st.lists(NAME_ALPHABET, max_size=40).map("".join))
def test_validate_name_accepts_exactly_the_spec_grammar(name: str) -> None:
    expected = SPEC_NAME.fullmatch(name) is not None and len(name) <= 255
    try:
        validate_name(name)
    except NameInvalid:
        accepted = False
    else:
        accepted = True
    assert accepted == expected


@given(st.from_regex(SPEC_NAME, fullmatch=True))
def test_every_name_the_grammar_generates_is_accepted_up_to_255_chars(name: str) -> None:
    if len(name) <= 255:
        assert validate_name(name) == name
    else:
        with pytest.raises(NameInvalid):
            validate_name(name)


@given(st.text(alphabet=st.sampled_from(list("aZ09._-/:@ é\n")), max_size=140))
def test_is_valid_tag_accepts_exactly_the_spec_grammar(tag: str) -> None:
    assert is_valid_tag(tag) == (SPEC_TAG.fullmatch(tag) is not None)


@given(st.from_regex(SPEC_TAG, fullmatch=True))
def test_every_tag_the_grammar_generates_is_a_tag_reference(tag: str) -> None:
    assert len(tag) <= 128
    assert parse_reference(tag) == tag
