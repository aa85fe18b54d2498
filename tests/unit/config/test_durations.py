from __future__ import annotations

import pytest

from dockyard.config.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("168h", 168 * 3600),
        ("30m", 1800),
        ("1h30m", 5400),
        ("10s", 10),
        ("1.5h", 5400),
        ("2h45m30.5s", 2 * 3600 + 45 * 60 + 30.5),
        ("300ms", 0.3),
        ("0", 0),
        ("-1m", -60),
        ("1m1m", 120),
    ],
)
def test_go_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3600", "1d", "h", "1h30", "1 h", "abc", "1.2.3s", "-"])
def test_invalid_durations_raise(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_bare_number_names_the_missing_unit() -> None:
    with pytest.raises(ValueError, match="missing unit"):
        parse_duration("3600")
