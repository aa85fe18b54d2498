"""Doublestar globs as Harbor's selectors read them."""

from __future__ import annotations

import pytest

from dockyard.projects.patterns import PatternInvalid, matches, validate_pattern

# Parametrized over SQLite and PostgreSQL by tests/unit/retention/conftest.py (or no DB at all).
pytestmark = pytest.mark.db_independent


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("**", "app", True),
        ("**", "app/api/v2", True),
        ("*", "app", True),
        ("*", "app/api", False),
        ("app/*", "app/api", True),
        ("app/*", "app/api/v2", False),
        ("app/**", "app/api/v2", True),
        ("app/**", "application", False),
        ("**/api", "api", True),
        ("**/api", "a/b/api", True),
        ("**/api", "rapi", False),
        ("v*", "v1.2.3", True),
        ("v*", "1.2.3", False),
        ("*-rc*", "1.0-rc1", True),
        ("1.?", "1.2", True),
        ("1.?", "1.22", False),
        ("{latest,stable}", "stable", True),
        ("{latest,stable}", "beta", False),
        ("v{1,2}.*", "v2.0", True),
        ("v{1,2}.*", "v3.0", False),
        ("release-{*,v*}", "release-x", True),
        ("{v1.*,release-{a,b}}", "release-b", True),  # braces nest
        ("{v1.*,release-{a,b}}", "release-c", False),
        ("[0-9]*", "1.0", True),
        ("[0-9]*", "v1.0", False),
        ("[!0-9]*", "v1.0", True),
        ("[^0-9]*", "1.0", False),
        ("a[/]b", "a/b", False),
        ("1.0", "1x0", False),  # the dot is literal
        ("\\*", "*", True),
        ("\\*", "x", False),
        ("dev", "dev", True),
        ("dev", "devel", False),  # whole names only
    ],
)
def test_matching(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "empty"),
        ("[abc", "unclosed '['"),
        ("{a,b", "unclosed '{'"),
        ("{a,{b,c}", "unclosed '{'"),
        ("a}", "unexpected '}'"),
        ("a,b", "unexpected ','"),
        ("[]", "unclosed '['"),
        ("[z-a]", "bad character class"),
        ("abc\\", "trailing backslash"),
        ("x" * 256, "longer than"),
    ],
)
def test_bad_patterns_say_what_is_wrong(pattern: str, says: str) -> None:
    with pytest.raises(PatternInvalid) as caught:
        validate_pattern(pattern)
    assert says in caught.value.message
