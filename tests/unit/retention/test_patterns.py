"""Doublestar globs as Harbor's selectors read them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dockyard.projects.patterns import (
    MAX_DFA_STATES,
    PatternInvalid,
    compile_pattern,
    matches,
    validate_pattern,
)

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


# Patterns a project admin could write to stall every push, with names that make a backtracking
# matcher try every way to split them (the first took 5 s with a regex, each more `*-` ~6x longer).
ADVERSARIAL = [
    ("*-*-*-*-*-*-*-X", "a" + "-" * 63, False),
    ("*-" * 127 + "X", "a" + "-" * 254, False),
    ("**-" * 85, "-" * 255, True),
    ("*a" * 127, "a" * 255, True),
    ("*a" * 127 + "b", "a" * 254, False),
    ("{*,**,?,a}" * 25 + "X", "ab/" * 85, False),
    ("{a,{a,{a,{a,*}}}}" * 14 + "b", "a" * 128, False),
    ("**/" * 85, "a/" * 127, True),
    ("[a-z]*" * 42, "a" * 255, True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), ADVERSARIAL)
def test_adversarial_patterns_take_linear_steps(pattern: str, name: str, expected: bool) -> None:
    """Each character of the name costs at most two passes over the pattern's program, however the
    pattern is built; a backtracking matcher has no such bound."""
    compiled = compile_pattern.__wrapped__(pattern)  # a fresh one: its step count starts at 0
    assert compiled.fullmatch(name) is expected
    assert compiled.size <= 2 * len(pattern) + 1
    assert compiled.steps <= (2 * len(name) + 1) * compiled.size
    steps = compiled.steps
    assert compiled.fullmatch(name) is expected
    assert compiled.steps == steps  # seen once, a name is one lookup per character


def test_adversarial_patterns_finish_at_once() -> None:
    """The issue's case and worse, in a process of their own, so a regression fails on the timeout
    instead of hanging the test run (a backtracking matcher never finishes these). The bound is
    generous on purpose: all of them take a few tens of milliseconds."""
    script = (
        "from dockyard.projects.patterns import matches\n"
        f"for pattern, name, expected in {ADVERSARIAL!r}:\n"
        "    assert matches(pattern, name) is expected, pattern\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


def test_the_pattern_memo_stays_bounded() -> None:
    compiled = compile_pattern.__wrapped__("*" + "?" * 40)
    for length in range(0, 3 * MAX_DFA_STATES):
        assert compiled.fullmatch("x" * length) is (length >= 40)
    assert len(compiled._states) <= MAX_DFA_STATES
