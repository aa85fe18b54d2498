"""`dockyard project quota --limit` sizes."""

from __future__ import annotations

import pytest

from dockyard.cli.client.errors import CliError
from dockyard.cli.commands_policies import human, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("12345", 12345),
        ("10GiB", 10 * 1024**3),
        ("10 gib", 10 * 1024**3),
        ("500MB", 500 * 1000**2),
        ("1.5TiB", int(1.5 * 1024**4)),
        ("2k", 2000),
        ("unlimited", None),
        ("none", None),
    ],
)
def test_sizes(text: str, size: int | None) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10 parsecs", "-5", "1e9"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(CliError):
        parse_size(text)


def test_human() -> None:
    assert [human(None), human(512), human(10 * 1024**2)] == ["unlimited", "512 B", "10.00 MiB"]
