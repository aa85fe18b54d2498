"""Byte counts as people read them, for quota messages."""

from __future__ import annotations


def human(size: int) -> str:
    """Bytes as people read them: 512 B, 1.5 MiB, 10 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            text = f"{value:.2f}".rstrip("0").rstrip(".") if unit != "B" else str(int(value))
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
