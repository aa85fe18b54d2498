"""Durations as registry:2 (Go's `time.ParseDuration`) writes them: `168h`, `30m`, `1h30m`, `1.5s`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign, as Go accepts
    "μs": 1e-6,  # U+03BC greek mu, as Go accepts
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# One `<number><unit>` part; longer units first so "ms" is not read as "m" + "s".
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration; raises ValueError with a readable reason.

    Like Go, "0" is the only unit-less value, parts may repeat in any order ("1h30m", "90s", "1.5h") and a
    leading sign is allowed; a bare number such as "3600" is rejected because its unit is ambiguous.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string such as 30m or 168h")
    body = text.strip()
    sign = 1.0
    if body and body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}: empty")
    total = 0.0
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        if match is None:
            rest = body[position:]
            reason = (
                "missing unit (use ns, us, ms, s, m or h)"
                if rest.replace(".", "").isdigit()
                else (f"unexpected {rest!r}")
            )
            raise ValueError(f"invalid duration {text!r}: {reason}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return sign * total


class Duration(str):
    """A setting's duration, kept as written (`30m`: what a config dump and the configuration reference
    show), checked when the settings are read, and used as `.seconds` or `.delta`: no call site parses."""

    @property
    def seconds(self) -> float:
        return parse_duration(self)

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @classmethod
    def _read(cls, value: str) -> Duration:
        parse_duration(value)  # ValueError, with the reason, for pydantic to report
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._read, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )
