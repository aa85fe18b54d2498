"""What serve's imports compile from text at every start, kept from one start to the next.

Python compiles a module's source once and keeps the code in its .pyc file; but the imports also
compile text they make at run time, at every start, on the way to the HTTP workers' first answer
(issue 18): the methods of each dataclass (`dataclasses._create_fn`: one `exec` per method, ~190
classes), each annotation given as text (`typing.ForwardRef`: ~1,100 in pydantic-core's schema types)
and each regular expression (`re`: ~700, parsed and compiled in Python). The same text always compiles
to the same code (the same pattern to the same program), so serve's main process looks each up in a
table saved by an earlier start and compiles only what it has not seen (`install`), then, before
Granian forks the workers, saves the table again if it compiled anything new (`save_and_uninstall`):
the texts of this start only, so it does not grow across upgrades.

The table is kept beside this module's .pyc (in `__pycache__`, or under PYTHONPYCACHEPREFIX), written
where Python writes .pyc files, and not where it does not (PYTHONDONTWRITEBYTECODE, a read-only
install: there `python -m dockyard.cli.prime` writes it ahead of serve, as the image's build does). It
holds code objects, as a .pyc does, and is trusted as one. Its header is the interpreter's
bytecode magic number: a table from another Python version is ignored. Only CPython 3.11's modules
are patched, whose private functions this relies on (`SUPPORTED`); elsewhere `install` does nothing.

This module imports nothing at load time that `dockyard serve` would not load anyway.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from importlib.util import MAGIC_NUMBER, cache_from_source
from pathlib import Path
from typing import Any

SUPPORTED = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
REWRITE_FRACTION = 50  # the table is written again when more than 1 in this many entries are new
_compile = builtins.compile
_exec = builtins.exec


def table_path() -> Path:
    """Beside this module's .pyc, wherever Python keeps it."""
    name = f"startup-cache.{sys.implementation.cache_tag}.marshal"
    return Path(cache_from_source(__file__)).with_name(name)


class StartupCache:
    """Code compiled from text and regular expressions' programs, by what they were made from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = _read(path)
        self.used: dict[Any, Any] = {}
        self.compiled = 0  # entries not found in the saved table
        self.kept = 0  # entries saved (or found unchanged) by `save_and_uninstall`

    def code(self, source: str, filename: str, mode: str) -> Any:
        key = ("code", source, filename, mode)
        code = self.used.get(key) or self.saved.get(key)
        if code is None:
            # Not inherited from this module (which has `annotations` on): the patched callers have
            # no future flags of their own, so builtin compile() and exec() inherit none there.
            code = _compile(source, filename, mode, dont_inherit=True)
            self.compiled += 1
        self.used[key] = code
        return code

    def pattern(self, pattern: str | bytes, flags: int) -> Any:
        """A regular expression's program (re's `_compiler.compile`), from its saved parts."""
        import _sre

        key = ("re", pattern, flags)
        parts = self.used.get(key) or self.saved.get(key)
        if parts is None:
            parts = _pattern_parts(pattern, flags)
            self.compiled += 1
        self.used[key] = parts
        final_flags, code, groups, groupindex, indexgroup = parts
        return _sre.compile(pattern, final_flags, list(code), groups, dict(groupindex), indexgroup)

    def save(self, whenever_new: bool = False) -> None:
        """Write this start's table where it differs in more than a few entries from the saved one
        (an upgrade, another configuration): not for the odd pattern made from a set, in an order
        that changes at every start (PyJWT's of PEM headers), which is compiled each time.
        `whenever_new`: where a single entry is new (`python -m dockyard.cli.prime`).

        The saved entries are kept beside this start's, so that two configurations started in turn
        (auth on and off, say) do not write it at each start; unless that makes the table more than
        twice this start's (upgrades made many of them stale), when this start's alone are written."""
        unchanged = 0 if whenever_new else len(self.used) // REWRITE_FRACTION
        if self.compiled <= unchanged or sys.dont_write_bytecode:
            return
        merged = {**self.saved, **self.used}
        table = merged if len(merged) <= 2 * len(self.used) else self.used
        try:
            data = MAGIC_NUMBER + marshal.dumps(table)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}")
            partial.write_bytes(data)
            os.replace(partial, self.path)
        except (OSError, ValueError):  # a read-only install; a value marshal cannot write
            return


def _read(path: Path) -> dict[Any, Any]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(MAGIC_NUMBER):
        return {}
    try:
        table = marshal.loads(memoryview(data)[len(MAGIC_NUMBER) :])
    except (EOFError, ValueError, TypeError):
        return {}
    return table if isinstance(table, dict) else {}


def _pattern_parts(pattern: str | bytes, flags: int) -> tuple[Any, ...]:
    """What CPython 3.11's `re._compiler.compile` hands `_sre.compile` for a pattern given as text."""
    from re import _compiler, _parser  # type: ignore[attr-defined]

    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = parsed.state.groupdict
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    # The opcodes are ints of a subclass of int's, which marshal does not write.
    program = tuple(int(word) for word in code)
    groups = parsed.state.groups - 1
    return (int(flags | parsed.state.flags), program, groups, dict(groupindex), tuple(indexgroup))


_active: list[tuple[StartupCache, Any]] = []  # the cache and re's own compile, while installed
last: StartupCache | None = None  # the one this process saved (its figures, for the tests)


def install() -> StartupCache | None:
    """In serve's main process, before its imports: compile from the table where it can."""
    if not SUPPORTED or _active:
        return None
    import dataclasses
    import re
    import typing

    cache = StartupCache(table_path())
    compile_pattern = re._compiler.compile  # type: ignore[attr-defined]

    def exec_in_dataclasses(source: Any, globals: Any = None, locals: Any = None) -> None:
        if type(source) is str:
            source = cache.code(source, "<string>", "exec")
        # exec() there, without globals, would run in dataclasses' own (every caller passes some).
        _exec(source, vars(dataclasses) if globals is None else globals, locals)

    def compile_in_typing(source: Any, filename: Any, mode: Any, *args: Any, **kwargs: Any) -> Any:
        if type(source) is str and type(filename) is str and not args and not kwargs:
            return cache.code(source, filename, mode)
        return _compile(source, filename, mode, *args, **kwargs)

    def compile_regex(pattern: Any, flags: int = 0) -> Any:
        if type(pattern) in (str, bytes) and type(flags) is int and not flags & re.DEBUG:
            return cache.pattern(pattern, flags)
        return compile_pattern(pattern, flags)

    # Module globals, found before the builtins: only these modules' calls go through the cache.
    dataclasses.exec = exec_in_dataclasses  # type: ignore[attr-defined]
    typing.compile = compile_in_typing  # type: ignore[attr-defined]
    re._compiler.compile = compile_regex  # type: ignore[attr-defined]
    _active.append((cache, compile_pattern))
    return cache


def save_and_uninstall(whenever_new: bool = False) -> None:
    """Before the fork: save what this start compiled, and give the modules their own functions back
    (what the workers build later compiles as Python does). `whenever_new`: see `StartupCache.save`."""
    global last
    if not _active:
        return
    import dataclasses
    import re
    import typing

    cache, compile_pattern = _active.pop()
    del dataclasses.exec  # type: ignore[attr-defined]
    del typing.compile  # type: ignore[attr-defined]
    re._compiler.compile = compile_pattern  # type: ignore[attr-defined]
    cache.save(whenever_new)
    # Not held for good in this process and each worker (the texts: ~1 MiB): only the figures.
    cache.kept = len(cache.used)
    cache.saved = cache.used = {}
    last = cache
