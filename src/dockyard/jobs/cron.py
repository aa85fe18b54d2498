"""Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC.

Supports `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month and weekday names
(`jan`, `mon`), `7` for Sunday, and the macros @hourly, @daily (@midnight), @weekly, @monthly,
@yearly (@annually). As in Vixie cron, when both day fields are restricted a day matches either.
`@every <duration>` (Go-style, e.g. `@every 24h`, `@every 90m`) fires at a fixed interval instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dockyard.config.durations import parse_duration

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, lowest, highest, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_YEARS = 5  # "30 2 31 2 *" (Feb 31st) never matches: give up rather than loop for ever


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is `*`
    any_weekday: bool

    def matches_day(self, moment: datetime) -> bool:
        in_month = moment.day in self.days
        in_week = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment` (UTC)."""
        current = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = current + timedelta(days=366 * _SEARCH_YEARS)
        while current < limit:
            if current.month not in self.months:
                current = _first_of_next_month(current)
            elif not self.matches_day(current):
                current = current.replace(hour=0, minute=0) + timedelta(days=1)
            elif current.hour not in self.hours:
                current = current.replace(minute=0) + timedelta(hours=1)
            elif current.minute not in self.minutes:
                current += timedelta(minutes=1)
            else:
                return current
        raise CronError(f"cron {self.expression!r} never matches")


@dataclass(frozen=True)
class Every:
    """`@every 24h`: a fixed interval from the previous run."""

    expression: str
    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC) + timedelta(seconds=self.seconds)


MIN_EVERY_SECONDS = 1.0


def parse_cron(expression: str) -> Cron | Every:
    """Parse a cron expression; CronError says what is wrong with it."""
    text = " ".join(expression.split()).lower()
    if text.startswith("@every"):
        return _parse_every(text)
    text = MACROS.get(text, text)
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError(
            f"cron {expression!r}: expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or one of {', '.join(sorted(MACROS))}"
        )
    values = [
        _parse_field(part, name, low, high, names)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(day % 7 for day in values[4])
    cron = Cron(
        expression=" ".join(expression.split()),
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )
    cron.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # refuse expressions that never fire
    return cron


def _parse_every(text: str) -> Every:
    duration = text.removeprefix("@every").strip()
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise CronError(f"@every: {exc}") from None
    if seconds < MIN_EVERY_SECONDS:
        raise CronError(f"@every: the interval must be at least 1s, got {duration!r}")
    return Every(f"@every {duration}", seconds)


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    chosen: set[int] = set()
    for item in text.split(","):
        chosen.update(_parse_item(item, name, low, high, names))
    return frozenset(chosen)


def _parse_item(item: str, name: str, low: int, high: int, names: dict[str, int]) -> range:
    span, _, step_text = item.partition("/")
    step = _number(step_text, name, names={}) if step_text else 1
    if step < 1:
        raise CronError(f"{name}: step must be at least 1 in {item!r}")
    if span == "*":
        start, end = low, high
    elif "-" in span:
        first, _, last = span.partition("-")
        start, end = _number(first, name, names), _number(last, name, names)
    else:
        start = _number(span, name, names)
        end = high if step_text else start  # "5/15" means 5-59/15, as cron reads it
    if not (low <= start <= high and low <= end <= high):
        raise CronError(f"{name}: {item!r} is outside {low}-{high}")
    if start > end:
        raise CronError(f"{name}: range {item!r} runs backwards")
    return range(start, end + 1, step)


def _number(text: str, name: str, names: dict[str, int]) -> int:
    if text in names:
        return names[text]
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    return int(text)


def _first_of_next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=1, hour=0, minute=0)
