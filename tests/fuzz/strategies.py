"""Hypothesis strategies for hostile /v2 and /token input: names, references, digests, headers, bodies.

Each mixes the valid (so requests reach deep into the handlers) with the almost valid and the absurd.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests.support.inprocess import ADMIN, basic
from tests.support.ociclient import (
    ALL_MANIFEST_TYPES,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_LAYER,
)

KNOWN_NAMES = ["fuzz/app", "library/app", "fuzz/new", "nope/app", "fuzz", "library"]
KNOWN_DIGESTS = ["sha256:" + "0" * 64, "sha512:" + "a" * 128]
MEDIA_TYPES = [*ALL_MANIFEST_TYPES, DOCKER_SCHEMA1_SIGNED, OCI_CONFIG, OCI_LAYER, OCI_EMPTY]

# Text of any kind, non-ASCII and control characters included (no lone surrogates: not encodable).
any_text = st.text(st.characters(codec="utf-8"), max_size=40)
# Header values are bytes on the wire: Latin-1, non-ASCII and control bytes included.
header_bytes = st.binary(max_size=60).filter(lambda raw: b"\r" not in raw and b"\n" not in raw)
digits = st.from_regex(r"[0-9]{1,30}", fullmatch=True)
_odd = [
    "",
    "-1",
    "+5",
    " 7",
    "1_0",
    "1e3",
    "0x10",
    "²",
    "³",
    "¹",
    "١٢",
    "9" * 25,
    "0" * 30 + "7",
    "1.5",
    "NaN",
]
# Numbers as clients should not send them; Content-Range's own digit bounds are tested in
# tests/integration (its 4,300-digit case is left out here: `numbers` below has it for every other field).
content_range_numbers = st.one_of(digits, st.sampled_from(_odd))
numbers = st.one_of(content_range_numbers, st.builds(lambda: "9" * 5000))


_component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+){0,2}", fullmatch=True)
valid_names = st.lists(_component, min_size=1, max_size=4).map("/".join)
names = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    valid_names,
    st.sampled_from(["..", "a/..", "A/B", "a//b", "%2e%2e", "a%2fb", "x" * 300, "a/" * 40 + "b"]),
    any_text.filter(lambda text: text.strip("/") != ""),
)

hex_digests = st.builds(
    lambda algorithm, hexes: f"{algorithm}:{hexes}",
    st.sampled_from(["sha256", "sha512", "sha384", "md5", "SHA256", "sha256+b64", ""]),
    st.text("0123456789abcdefABCDEF", min_size=0, max_size=130),
)
digests = st.one_of(st.sampled_from(KNOWN_DIGESTS), hex_digests, any_text)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,140}", fullmatch=True)
references = st.one_of(st.just("v1"), tags, digests, st.sampled_from([".INVALID", "-x", "a" * 200]))


def path_segment(text: str) -> str:
    """A name or reference as a client would put it in a path: percent-encoding what must be, leaving
    slashes and any percent-escapes it already has."""
    return quote(text, safe="/%:@+")


def wire(headers: dict[str, Any]) -> dict[str, bytes]:
    """Header values as bytes on the wire: text as Latin-1 where it can be (servers decode headers as
    Latin-1, so '²' arrives as '²'), else UTF-8, as a careless client would send it."""
    return {name: value if isinstance(value, bytes) else _encoded(value) for name, value in headers.items()}


def _encoded(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def authorization() -> st.SearchStrategy[dict[str, Any]]:
    """As the admin (most requests, so they reach the handlers), anonymous, or credentials that are wrong
    in every way: unknown users, malformed base64, non-UTF-8 and non-ASCII bytes, odd schemes."""
    strangers = st.tuples(any_text.filter(lambda user: user != "admin"), any_text)
    odd = st.one_of(
        strangers.map(lambda pair: basic(*pair)),
        header_bytes.map(lambda raw: {"Authorization": b"Basic " + raw}),
        st.binary(max_size=60).map(lambda raw: {"Authorization": b"Basic " + base64.b64encode(raw)}),
        header_bytes.map(lambda raw: {"Authorization": b"Bearer " + raw}),
        header_bytes.map(lambda raw: {"Authorization": raw}),
        st.builds(lambda: {"Authorization": "Basic " + "A" * 20_000}),
    )
    admin = st.just(basic(*ADMIN))
    # Mostly the admin: a refused request never reaches the handlers' parsing.
    return st.one_of(admin, admin, admin, admin, st.just({}), odd).map(wire)


def _optional_header(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), values.map(lambda value: {name: value}))


def request_headers() -> st.SearchStrategy[dict[str, Any]]:
    """Authorization plus any of Accept, Content-Type, Content-Length, Content-Range, Range, Host."""
    media_text = st.one_of(st.sampled_from(MEDIA_TYPES), any_text)
    media = st.one_of(media_text, header_bytes)
    ranges = st.one_of(
        st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), numbers), numbers),
        header_bytes,
    )
    content_ranges = st.one_of(
        st.builds(lambda a, b: f"{a}-{b}", content_range_numbers, content_range_numbers), header_bytes
    )
    parts = st.tuples(
        authorization(),
        _optional_header("Accept", st.one_of(media, st.lists(media_text, max_size=4).map(", ".join))),
        _optional_header("Content-Type", media),
        _optional_header("Content-Length", numbers),
        _optional_header("Content-Range", content_ranges),
        _optional_header("Range", ranges),
        _optional_header("Host", st.one_of(any_text, header_bytes)),
    )

    def merge(headers: tuple[dict[str, Any], ...]) -> dict[str, bytes]:
        merged: dict[str, bytes] = {}
        for part in headers:
            merged.update(wire(part))
        return merged

    return parts.map(merge)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        any_text,
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def descriptor_like(known: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """A descriptor: one that exists, one with a field made wrong, or any JSON value."""
    fields = st.fixed_dictionaries(
        {"mediaType": st.one_of(st.sampled_from(MEDIA_TYPES), any_text)},
        optional={
            "digest": st.one_of(digests, json_values),
            "size": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), json_values),
            "platform": st.one_of(
                st.fixed_dictionaries(
                    {
                        "architecture": st.one_of(any_text, json_values),
                        "os": st.one_of(any_text, json_values),
                    },
                    optional={"variant": any_text, "os.features": json_values},
                ),
                json_values,
            ),
            "annotations": st.one_of(st.dictionaries(any_text, any_text, max_size=3), json_values),
            "data": st.one_of(
                st.binary(max_size=20).map(lambda raw: base64.b64encode(raw).decode()), any_text
            ),
            "urls": json_values,
            "artifactType": any_text,
        },
    )
    return st.one_of(st.sampled_from(known), fields, json_values) if known else st.one_of(fields, json_values)


def manifest_bodies(known: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Manifest-shaped JSON (image manifests and indexes with good and bad descriptors), duplicate keys,
    any JSON, and bytes that are not JSON."""
    descriptor = descriptor_like(known)
    document = st.fixed_dictionaries(
        {},
        optional={
            "schemaVersion": st.one_of(st.just(2), json_values),
            "mediaType": st.one_of(st.sampled_from(MEDIA_TYPES), any_text),
            "config": descriptor,
            "layers": st.one_of(st.lists(descriptor, max_size=3), json_values),
            "manifests": st.one_of(st.lists(descriptor, max_size=3), json_values),
            "subject": descriptor,
            "artifactType": any_text,
            "annotations": st.one_of(st.dictionaries(any_text, any_text, max_size=3), json_values),
        },
    )
    encoded = document.map(lambda value: json.dumps(value).encode())
    duplicated = encoded.map(
        lambda body: b'{"schemaVersion": 2, ' + body[1:] if body.startswith(b"{") else body
    )
    return st.one_of(
        encoded,
        duplicated,
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200),
    )
