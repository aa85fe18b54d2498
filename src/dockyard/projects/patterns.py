"""Doublestar glob patterns, as Harbor's immutability and retention selectors read them.

- `*` any run of characters except `/`; `**` any run including `/` (so `**` matches every name,
  `**/api` an `api` at any depth, `a/**` everything under `a`)
- `?` one character except `/`; `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` one character of (not of) a
  class, never `/`
- `{a,b,c}` any of the alternatives (which may hold patterns and braces themselves)
- `\\x` the character x itself

A pattern matches a whole name. Patterns compile once to a regular expression. One implementation for
tag immutability (projects) and tag retention, so a pattern means the same in both.
"""

from __future__ import annotations

import re
from functools import lru_cache

from dockyard.errors import DockyardError

MAX_PATTERN_LENGTH = 255


class PatternInvalid(DockyardError):
    message = "invalid pattern"


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).fullmatch(name) is not None


def validate_pattern(pattern: str) -> str:
    """The pattern, or PatternInvalid saying what is wrong with it."""
    compile_pattern(pattern)
    return pattern


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise _invalid(pattern, "empty pattern (use ** to match everything)")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise _invalid(pattern, f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    regex, end = _translate(pattern, 0, in_braces=False)
    if end != len(pattern):  # a "}" or "," with no "{" before it
        raise _invalid(pattern, f"unexpected {pattern[end]!r} at {end}")
    return re.compile(regex, re.DOTALL)


def _invalid(pattern: str, why: str) -> PatternInvalid:
    return PatternInvalid(f"invalid pattern {pattern!r}: {why}", detail={"pattern": pattern})


def _translate(pattern: str, index: int, in_braces: bool) -> tuple[str, int]:
    """Translate from `index` up to the end, or (in braces) up to the `,` or `}` that ends an
    alternative; returns the regex and where it stopped."""
    out: list[str] = []
    while index < len(pattern):
        char = pattern[index]
        if char in ",}":
            if in_braces:
                return "".join(out), index
            raise _invalid(pattern, f"unexpected {char!r} at {index}")
        if char == "*":
            index = _star(pattern, index, out)
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            index = _char_class(pattern, index, out)
            continue
        elif char == "{":
            index = _alternatives(pattern, index, out)
            continue
        elif char == "\\":
            if index + 1 >= len(pattern):
                raise _invalid(pattern, "trailing backslash")
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    if in_braces:
        raise _invalid(pattern, "unclosed '{'")
    return "".join(out), index


def _star(pattern: str, index: int, out: list[str]) -> int:
    if not pattern.startswith("**", index):
        out.append("[^/]*")
        return index + 1
    end = index + 2
    at_start = index == 0 or pattern[index - 1] == "/"
    if at_start and pattern.startswith("/", end):
        out.append("(?:.*/)?")  # "**/": any number of leading directories, none included
        return end + 1
    out.append(".*")
    return end


def _char_class(pattern: str, index: int, out: list[str]) -> int:
    end = pattern.find("]", index + 2)  # a "]" right after "[" (or "[!") belongs to the class
    if end == -1:
        raise _invalid(pattern, "unclosed '['")
    body = pattern[index + 1 : end]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    if not body:
        raise _invalid(pattern, "empty character class")
    escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
    try:
        re.compile(f"[{escaped}]")
    except re.error as exc:
        raise _invalid(pattern, f"bad character class [{body}]: {exc.msg}") from None
    # A class never matches the separator, as in doublestar.
    out.append(f"[^/{escaped}]" if negate else f"(?!/)[{escaped}]")
    return end + 1


def _alternatives(pattern: str, index: int, out: list[str]) -> int:
    options: list[str] = []
    index += 1
    while True:
        regex, index = _translate(pattern, index, in_braces=True)
        options.append(regex)
        if pattern[index] == "}":
            out.append("(?:" + "|".join(options) + ")")
            return index + 1
        index += 1  # past ","
