"""Configure dockyard's logging into a buffer for a test, and put logging back afterwards."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from dockyard.observability.logging import configure_logging


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@contextmanager
def captured_logs(level: str = "debug", formatter: str = "json", **kwargs: Any) -> Iterator[Captured]:
    captured = Captured()
    root = logging.getLogger()
    old_level = root.level
    configure_logging(level, formatter, stream=captured.stream, **kwargs)
    try:
        yield captured
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "dockyard"]:
            root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
