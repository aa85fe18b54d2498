"""Doublestar glob patterns, as Harbor's retention selectors use them (bmatcuk/doublestar).

- `*` any run of characters except `/`; `**` any run including `/` (so `**` matches every name,
  `**/api` an `api` at any depth, `a/**` everything under `a`)
- `?` one character except `/`; `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` one character of (not of) a class
- `{a,b,c}` any of the alternatives (which may hold patterns themselves, but not nest braces)
- `\\x` the character x itself

A pattern matches the whole name. Patterns compile once to a regular expression.
"""

from __future__ import annotations

import re
from functools import lru_cache

from dockyard.errors import DockyardError

MAX_PATTERN_LENGTH = 255


class PatternInvalid(DockyardError):
    message = "invalid pattern"


def validate_pattern(pattern: str) -> str:
    """The pattern, or PatternInvalid saying what is wrong with it."""
    compile_pattern(pattern)
    return pattern


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).fullmatch(name) is not None


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise PatternInvalid("empty pattern (use ** to match everything)", detail={"pattern": pattern})
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternInvalid(
            f"pattern longer than {MAX_PATTERN_LENGTH} characters", detail={"pattern": pattern}
        )
    return re.compile(_Translator(pattern).translate(), re.DOTALL)


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.position = 0
        self.in_braces = False

    def fail(self, why: str) -> PatternInvalid:
        return PatternInvalid(f"invalid pattern {self.pattern!r}: {why}", detail={"pattern": self.pattern})

    def translate(self) -> str:
        parts: list[str] = []
        while self.position < len(self.pattern):
            char = self.pattern[self.position]
            self.position += 1
            if char == "*":
                parts.append(self._star())
            elif char == "?":
                parts.append("[^/]")
            elif char == "[":
                parts.append(self._char_class())
            elif char == "{":
                parts.append(self._alternatives())
            elif char in "}," and self.in_braces:  # the end of one alternative
                self.position -= 1
                break
            elif char == "}":
                raise self.fail("'}' without '{'")
            elif char == "\\":
                parts.append(re.escape(self._escaped()))
            else:
                parts.append(re.escape(char))
        return "".join(parts)

    def _star(self) -> str:
        if self.position < len(self.pattern) and self.pattern[self.position] == "*":
            self.position += 1
            # `**/` also matches nothing at all, so `**/api` matches a top-level `api`.
            if self.position < len(self.pattern) and self.pattern[self.position] == "/":
                self.position += 1
                return "(?:.*/)?"
            return ".*"
        return "[^/]*"

    def _escaped(self) -> str:
        if self.position >= len(self.pattern):
            raise self.fail("trailing backslash")
        char = self.pattern[self.position]
        self.position += 1
        return char

    def _char_class(self) -> str:
        end = self.pattern.find("]", self.position + 1)
        if end < 0:
            raise self.fail("'[' without ']'")
        body = self.pattern[self.position : end]
        self.position = end + 1
        negate = body[:1] in ("!", "^")
        if negate:
            body = body[1:]
        if not body:
            raise self.fail("empty character class")
        escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
        try:
            re.compile(f"[{escaped}]")
        except re.error as exc:
            raise self.fail(f"bad character class [{body}]: {exc.msg}") from None
        # A class never matches the separator, as in doublestar.
        return f"(?![/])[{'^' if negate else ''}{escaped}]"

    def _alternatives(self) -> str:
        if self.in_braces:
            raise self.fail("nested '{' is not supported")
        self.in_braces = True
        options: list[str] = []
        while True:
            options.append(self.translate())
            if self.position >= len(self.pattern):
                raise self.fail("'{' without '}'")
            char = self.pattern[self.position]
            self.position += 1
            if char == "}":
                break
        self.in_braces = False
        return "(?:" + "|".join(options) + ")"
