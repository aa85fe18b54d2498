"""Doublestar glob patterns, as Harbor's immutability and retention selectors read them.

- `*` any run of characters except `/`; `**` any run including `/` (so `**` matches every name,
  `**/api` an `api` at any depth, `a/**` everything under `a`)
- `?` one character except `/`; `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` one character of (not of) a
  class, never `/`
- `{a,b,c}` any of the alternatives (which may hold patterns and braces themselves)
- `\\x` the character x itself

A pattern matches a whole name. One implementation for tag immutability (projects) and tag retention,
so a pattern means the same in both.

Matching takes time linear in the name, whatever the pattern: patterns are user input and every tag
push runs them, so no backtracking regex may be built from them (`*-*-*-*-*-*-*-X` against `a` and
63 dashes took 5 s with one, and doubled with each more `*-`). A pattern compiles to a small program
of single-character steps (a Thompson NFA); matching follows every live alternative at once, one
character at a time, and remembers each set of live positions it met as a DFA state, so a name is one
dictionary lookup per character once a pattern has been seen (RE2's lazy DFA, in a hundred lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from dockyard.errors import Category, DockyardError

MAX_PATTERN_LENGTH = 255
# Remembered DFA states per pattern; past it the memo starts afresh (matching stays linear: a new
# state costs one pass over the program).
MAX_DFA_STATES = 512

CharTest = Callable[[str], bool]


class PatternInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid pattern"


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).fullmatch(name)


def validate_pattern(pattern: str) -> str:
    """The pattern, or PatternInvalid saying what is wrong with it."""
    compile_pattern(pattern)
    return pattern


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> CompiledPattern:
    if not pattern:
        raise _invalid(pattern, "empty pattern (use ** to match everything)")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise _invalid(pattern, f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    builder = _Builder(pattern)
    end = builder.sequence(0, in_braces=False)
    if end != len(pattern):  # a "}" or "," with no "{" before it
        raise _invalid(pattern, f"unexpected {pattern[end]!r} at {end}")
    builder.program.append(_Match())
    return CompiledPattern(pattern, builder.program)


def _invalid(pattern: str, why: str) -> PatternInvalid:
    return PatternInvalid(f"invalid pattern {pattern!r}: {why}", detail={"pattern": pattern})


# --- the program ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Char:
    """Consume one character that passes `test`, go on at the next instruction."""

    test: CharTest


@dataclass(slots=True)
class _Split:
    """Go on at every one of `targets` (no character consumed)."""

    targets: list[int]


@dataclass(slots=True)
class _Match:
    pass


_Instruction = _Char | _Split | _Match


@dataclass(slots=True, eq=False)
class _State:
    """A set of live program positions (all of them `_Char` or `_Match`): one DFA state."""

    positions: frozenset[int]
    accepting: bool
    after: dict[str, _State] = field(default_factory=dict)  # next state per character, filled lazily


class CompiledPattern:
    def __init__(self, pattern: str, program: list[_Instruction]) -> None:
        self.pattern = pattern
        self._program = program
        self._states: dict[frozenset[int], _State] = {}
        self.steps = 0  # instructions visited while building states; tests check it stays linear
        self._start_positions = self._closure([0])
        self._start = self._state(self._start_positions)

    @property
    def size(self) -> int:
        return len(self._program)

    def fullmatch(self, name: str) -> bool:
        state = self._start
        for char in name:
            following = state.after.get(char)
            if following is None:
                following = self._step(state, char)
            if not following.positions:
                return False  # nothing can match any more
            state = following
        return state.accepting

    def _step(self, state: _State, char: str) -> _State:
        program = self._program
        moved: list[int] = []
        for position in state.positions:
            instruction = program[position]
            self.steps += 1
            if isinstance(instruction, _Char) and instruction.test(char):
                moved.append(position + 1)
        following = self._state(self._closure(moved))
        state.after[char] = following
        return following

    def _state(self, positions: frozenset[int]) -> _State:
        found = self._states.get(positions)
        if found is None:
            if len(self._states) >= MAX_DFA_STATES:
                # Forget every state, the start's links too, so memory stays bounded; matches under
                # way keep the states they hold.
                self._states = {}
                self._start = self._remember(self._start_positions)
            found = self._remember(positions)
        return found

    def _remember(self, positions: frozenset[int]) -> _State:
        state = _State(positions, any(isinstance(self._program[p], _Match) for p in positions))
        self._states[positions] = state
        return state

    def _closure(self, positions: list[int]) -> frozenset[int]:
        """Where the program can stand after following splits from `positions` (each visited once)."""
        seen: set[int] = set()
        live: set[int] = set()
        stack = list(positions)
        while stack:
            position = stack.pop()
            if position in seen:
                continue
            seen.add(position)
            self.steps += 1
            instruction = self._program[position]
            if isinstance(instruction, _Split):
                stack.extend(instruction.targets)
            else:
                live.add(position)
        return frozenset(live)


# --- compiling --------------------------------------------------------------------------------------
def _is(expected: str) -> CharTest:
    return lambda char: char == expected


def _not_slash(char: str) -> bool:
    return char != "/"


def _anything(char: str) -> bool:
    return True


class _Builder:
    """Appends the program for a pattern; each method returns where in the pattern it stopped."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.program: list[_Instruction] = []

    def sequence(self, index: int, in_braces: bool) -> int:
        """From `index` up to the end, or (in braces) up to the `,` or `}` that ends an alternative."""
        pattern = self.pattern
        while index < len(pattern):
            char = pattern[index]
            if char in ",}":
                if in_braces:
                    return index
                raise _invalid(pattern, f"unexpected {char!r} at {index}")
            if char == "*":
                index = self._star(index)
                continue
            if char == "[":
                index = self._char_class(index)
                continue
            if char == "{":
                index = self._alternatives(index)
                continue
            if char == "?":
                self._char(_not_slash)
            elif char == "\\":
                if index + 1 >= len(pattern):
                    raise _invalid(pattern, "trailing backslash")
                index += 1
                self._char(_is(pattern[index]))
            else:
                self._char(_is(char))
            index += 1
        if in_braces:
            raise _invalid(pattern, "unclosed '{'")
        return index

    def _char(self, test: CharTest) -> None:
        self.program.append(_Char(test))

    def _repeat(self, test: CharTest) -> None:
        """Any number of characters passing `test`."""
        loop = len(self.program)
        split = _Split([loop + 1])
        self.program.append(split)
        self._char(test)
        self.program.append(_Split([loop]))
        split.targets.append(len(self.program))

    def _star(self, index: int) -> int:
        pattern = self.pattern
        if not pattern.startswith("**", index):
            self._repeat(_not_slash)
            return index + 1
        end = index + 2
        at_start = index == 0 or pattern[index - 1] == "/"
        if at_start and pattern.startswith("/", end):
            # "**/": any number of leading directories, none included: (anything then "/") or nothing.
            optional = _Split([len(self.program) + 1])
            self.program.append(optional)
            self._repeat(_anything)
            self._char(_is("/"))
            optional.targets.append(len(self.program))
            return end + 1
        self._repeat(_anything)
        return end

    def _char_class(self, index: int) -> int:
        pattern = self.pattern
        end = pattern.find("]", index + 2)  # a "]" right after "[" (or "[!") belongs to the class
        if end == -1:
            raise _invalid(pattern, "unclosed '['")
        body = pattern[index + 1 : end]
        negate = body[:1] in ("!", "^")
        if negate:
            body = body[1:]
        if not body:
            raise _invalid(pattern, "empty character class")
        ranges = _class_ranges(pattern, body)

        def test(char: str) -> bool:
            # A class never matches the separator, as in doublestar.
            return char != "/" and any(low <= char <= high for low, high in ranges) != negate

        self._char(test)
        return end + 1

    def _alternatives(self, index: int) -> int:
        fork = _Split([])
        self.program.append(fork)
        ends: list[_Split] = []
        index += 1
        while True:
            fork.targets.append(len(self.program))
            index = self.sequence(index, in_braces=True)
            join = _Split([])
            self.program.append(join)
            ends.append(join)
            if self.pattern[index] == "}":
                after = len(self.program)
                for join in ends:
                    join.targets.append(after)
                return index + 1
            index += 1  # past ","


def _class_ranges(pattern: str, body: str) -> list[tuple[str, str]]:
    """`a-z0_` -> [(a, z), (0, 0), (_, _)]. Every character is literal (a backslash too); a `-`
    first or last is itself."""
    ranges: list[tuple[str, str]] = []
    at = 0
    while at < len(body):
        low = body[at]
        if at + 2 < len(body) and body[at + 1] == "-":
            high = body[at + 2]
            if high < low:
                raise _invalid(pattern, f"bad character class [{body}]: bad character range {low}-{high}")
            ranges.append((low, high))
            at += 3
        else:
            ranges.append((low, low))
            at += 1
    return ranges
