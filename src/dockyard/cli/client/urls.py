"""Building API paths (kept apart from the HTTP client so commands load without httpx)."""

from __future__ import annotations

from urllib.parse import quote


def segment(value: str, *, keep_slashes: bool = False) -> str:
    """`value` quoted for a URL path (a robot's `$` and `+` too; repository names keep their slashes)."""
    return quote(value, safe="/" if keep_slashes else "")
