"""Decimal numbers in client input (headers, query parameters), read the same way everywhere.

`str.isdigit()` then `int()` is not the check it looks like: `isdigit` is true for '²' and '³' (which
`int` refuses), `int` also takes '١٢', ' 7', '+5' and '1_0', and it raises past 4300 digits. Each let a
request (`?n=²`, `Content-Length: 999...9`) end in a 500.
"""

from __future__ import annotations

MAX_DIGITS = 19
# What a number of more than MAX_DIGITS digits reads as: larger than any size, offset or count dockyard
# deals in (or a 64-bit database integer holds), so every limit check refuses it as it would the exact value.
SATURATED = 10**MAX_DIGITS


def parse_decimal(text: str) -> int | None:
    """The value of `text` if it is ASCII digits 0-9 and nothing else (leading zeros allowed), else None.
    Values past MAX_DIGITS digits read as SATURATED, without converting thousands of digits."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= MAX_DIGITS else SATURATED
