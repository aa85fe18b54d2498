from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from dockyard.config.durations import Duration, parse_duration
from dockyard.config.settings import Settings


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


def test_every_duration_setting_is_read_once_and_used_as_seconds() -> None:
    """Each duration in the settings, default or given, is a Duration: its text as written (a config
    dump shows `30s`), its value as `.seconds` / `.delta`; call sites never parse."""
    settings = Settings.model_validate({"jobs": {"lease": "90s"}, "http": {"drain_timeout": "0"}})
    durations = {
        "auth.token.expiration": settings.auth.token.expiration,
        "jobs.lease": settings.jobs.lease,
        "jobs.history": settings.jobs.history,
        "http.drain_timeout": settings.http.drain_timeout,
        "audit.retention": settings.audit.retention,
        "uploadpurging.age": settings.storage.maintenance.uploadpurging.age,
    }
    assert all(isinstance(value, Duration) for value in durations.values()), durations
    assert settings.jobs.lease.delta == timedelta(seconds=90)
    assert settings.auth.token.expiration.seconds == 300
    assert settings.http.drain_timeout.seconds == 0
    assert settings.model_dump(mode="json")["jobs"]["lease"] == "90s"


@pytest.mark.parametrize(
    ("section", "value", "reason"),
    [("jobs", {"lease": "0s"}, "positive"), ("http", {"drain_timeout": "-1s"}, "negative"),
     ("jobs", {"history": "ten days"}, "invalid duration")],
)
def test_a_bad_duration_setting_is_refused_when_read(
    section: str, value: dict[str, str], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings.model_validate({section: value})
