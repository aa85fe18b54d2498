"""Cron expressions: what they match, when they next fire, and clear errors for bad ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dockyard.jobs.cron import CronError, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", "2026-01-01T00:00:30", "2026-01-01T00:01:00"),
        ("17 * * * *", "2026-01-01T00:17:00", "2026-01-01T01:17:00"),
        ("0 3 * * *", "2026-01-01T03:00:00", "2026-01-02T03:00:00"),
        ("*/15 * * * *", "2026-01-01T10:16:00", "2026-01-01T10:30:00"),
        ("5/20 * * * *", "2026-01-01T10:26:00", "2026-01-01T10:45:00"),
        ("0 9-17/4 * * *", "2026-01-01T13:00:00", "2026-01-01T17:00:00"),
        ("0 0 1,15 * *", "2026-01-02T00:00:00", "2026-01-15T00:00:00"),
        ("0 0 * * mon", "2026-01-01T00:00:00", "2026-01-05T00:00:00"),  # 2026-01-01 is a Thursday
        ("0 0 * * 7", "2026-01-01T00:00:00", "2026-01-04T00:00:00"),  # 7 is Sunday too
        ("0 0 1 feb *", "2026-03-01T00:00:00", "2027-02-01T00:00:00"),
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("30 23 31 12 *", "2026-12-31T23:30:00", "2027-12-31T23:30:00"),
        # Both day fields restricted: either matches (the 13th, or a Friday).
        ("0 0 13 * fri", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),
        ("@daily", "2026-01-01T12:00:00", "2026-01-02T00:00:00"),
        ("@weekly", "2026-01-01T12:00:00", "2026-01-04T00:00:00"),
        ("@monthly", "2026-01-01T12:00:00", "2026-02-01T00:00:00"),
        ("@hourly", "2026-01-01T12:59:59", "2026-01-01T13:00:00"),
        ("  0   3 *  * * ", "2026-01-01T00:00:00", "2026-01-01T03:00:00"),
        ("@every 90m", "2026-01-01T00:00:30", "2026-01-01T01:30:30"),
        ("@every 1h30m", "2026-01-01T23:00:00", "2026-01-02T00:30:00"),
    ],
)
def test_next_run(expression: str, after: str, expected: str) -> None:
    assert parse_cron(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("61 * * * *", "minute: '61' is outside 0-59"),
        ("* 24 * * *", "hour: '24' is outside 0-23"),
        ("* * 0 * *", "day of month: '0' is outside 1-31"),
        ("* * * 13 *", "month: '13' is outside 1-12"),
        ("* * * * 8", "day of week: '8' is outside 0-7"),
        ("*/0 * * * *", "step must be at least 1"),
        ("10-5 * * * *", "runs backwards"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("* * * smarch *", "month: 'smarch' is not a number or a name"),
        ("0 0 30 2 *", "never matches"),
        ("@often", "expected 5 fields"),
        ("@every", "@every: invalid duration"),
        ("@every 10", "missing unit"),
        ("@every 500ms", "at least 1s"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expression)
