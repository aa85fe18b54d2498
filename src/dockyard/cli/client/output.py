"""What the CLI prints: rich tables and key/value blocks for people, or the API's JSON with `--json`.

Results go to stdout, messages and errors to stderr, so `dockyard ... --json | jq` always parses.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich loads when a command prints, not with the CLI (nor in `dockyard serve`)
    from rich.console import Console

Format = Callable[[Any], str]
# Piped output is not wrapped at 80 columns: every row stays one line for grep and awk.
PIPE_WIDTH = 1000


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(text(item) for item in value)
    return str(value)


def when(value: Any) -> str:
    """An API timestamp in local time, to the minute."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M")


def size(value: Any) -> str:
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class Column:
    header: str
    key: str | Callable[[dict[str, Any]], Any]
    format: Format = text

    def cell(self, row: dict[str, Any]) -> str:
        value = self.key(row) if callable(self.key) else row.get(self.key)
        return self.format(value)


def _console(stream: Any) -> Console:
    from rich.console import Console

    is_terminal = stream.isatty()
    width = None if is_terminal or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._out = _console(sys.stdout)
        self._err = _console(sys.stderr)

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> None:
        if self.as_json:
            self.json(list(rows))
            return
        if not rows:
            self.note(empty)
            return
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in columns:
            table.add_column(column.header, no_wrap=True)
        for row in rows:
            table.add_row(*(column.cell(row) for column in columns))
        self._out.print(table)

    def record(self, item: dict[str, Any], fields: Sequence[Column], title: str | None = None) -> None:
        """One object as `Label: value` lines (or as JSON)."""
        if self.as_json:
            self.json(item)
            return
        if title:
            self._out.print(title, markup=False)
        width = max(len(field.header) for field in fields)
        for field in fields:
            self._out.print(f"{field.header + ':':<{width + 1}} {field.cell(item)}", markup=False)

    def done(self, message: str, item: Any = None) -> None:
        """The outcome of a change: `message` for people; the changed object (if any) as JSON."""
        if self.as_json:
            if item is not None:
                self.json(item)
            return
        self._out.print(message, markup=False)

    def secret(self, label: str, value: str) -> None:
        """A secret shown once, on stdout and plainly, so it can be copied or captured."""
        if not self.as_json:
            self._out.print(f"{label}: {value}", markup=False, soft_wrap=True)

    def note(self, message: str) -> None:
        self._err.print(message, markup=False)

    def error(self, message: str) -> None:
        self._err.print(f"dockyard: {message}", markup=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
