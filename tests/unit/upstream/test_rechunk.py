"""Blob streams from an upstream are rechunked with one copy per byte (upstream.client.rechunk): every
byte kept, in order, each chunk exactly `chunk_size` but the last, whatever the pieces received."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.upstream.client import rechunk


@given(st.lists(st.binary(max_size=70)), st.integers(min_value=1, max_value=64))
def test_rechunk_keeps_every_byte_in_chunks_of_the_size(pieces: list[bytes], size: int) -> None:
    chunks = list(rechunk(pieces, size))
    assert b"".join(chunks) == b"".join(pieces)
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert all(0 < len(chunk) <= size for chunk in chunks)
    assert all(type(chunk) is bytes for chunk in chunks)


def test_rechunk_refuses_a_size_of_nothing() -> None:
    with pytest.raises(ValueError):
        list(rechunk([b"abc"], 0))
