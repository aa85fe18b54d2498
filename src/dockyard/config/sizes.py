"""Sizes in settings: `16GiB`, `500MB`, `1.5TiB`, or a number of bytes."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS |= {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}  # as `dockyard project quota --limit`
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{1,6})?)\s*([A-Za-z]{0,3})\s*")


def parse_size(value: int | str) -> int:
    """Bytes in a size; ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: expected e.g. 16GiB, 500MB or a number of bytes")
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"invalid size {value!r}: expected e.g. 16GiB, 500MB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[unit])
