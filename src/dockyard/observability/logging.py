"""Structured logs with structlog: JSON (json, logstash) or readable text, stdlib logging routed through it.

The request id travels in a contextvar, so every line logged while serving a request carries it.
Secrets never reach the output: keys that name one are masked, and so are passwords in URLs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO


@contextlib.contextmanager
def _unimportable(*names: str) -> Iterator[None]:
    """While inside: `import NAME` fails for those of `names` not loaded yet (then they are as before)."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # what makes an import raise ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


# structlog.dev loads rich (with pygments and attrs) when it is installed, for the pretty tracebacks
# dockyard never renders (plain ones, below): ~5 MiB and 100 modules in every server process. The CLI
# loads rich for its own output where it needs it.
with _unimportable("rich"):
    import structlog
    from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Any key containing one of these words is masked, whatever logged it.
_SECRET_KEY = re.compile(
    "password|passwd|secret|token|authorization|cookie|apikey|api_key|private_key|credential", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
REDACTED = "[redacted]"


def configure_logging(
    level: str = "info",
    formatter: str = "text",
    fields: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send structlog and stdlib logging to `stream` (default stderr), one line per event.

    `formatter` is registry:2's: json, logstash (JSON with @timestamp/@version/message) or text.
    `fields` are added to every line (registry:2's log.fields). Safe to call again: it replaces itself.
    """
    numeric_level = _LEVELS.get(level.lower(), logging.INFO)
    output = stream or sys.stderr
    common: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_logger_name,  # the stdlib logger's name, or the name given to get_logger
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fields:
        common.append(_add_static_fields(dict(fields)))
    common += [redact_secrets, structlog.processors.StackInfoRenderer()]

    renderer: list[Processor]
    if formatter in ("json", "logstash"):
        renderer = [structlog.processors.format_exc_info]
        if formatter == "logstash":
            renderer.append(_logstash_fields)
        renderer.append(structlog.processors.JSONRenderer())
    else:
        # Plain tracebacks: rich's (source with syntax highlighting, every frame's locals) took tens of
        # seconds per error on a loaded node, on the event loop, and would print locals `redact_secrets`
        # never sees. A burst of errors (the database gone) froze the node, /healthz included.
        renderer = [
            PlainConsoleRenderer(
                structlog.dev.ConsoleRenderer(
                    colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
                )
            )
        ]

    # dockyard's own lines (the access log among them, on the hot path) skip stdlib logging: a level check
    # that costs nothing when off, and a direct write when on.
    structlog.configure(
        processors=[*common, *renderer],
        logger_factory=_NamedWriterFactory(output),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    # Libraries' stdlib logging goes through the same processors and renderer.
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=common,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    handler.set_name("dockyard")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "dockyard"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)


def get_logger(name: str) -> Any:
    """A structlog logger: `get_logger(__name__).info("blob.committed", digest=d, size=n)`."""
    return structlog.get_logger(name)


# The request's id: a contextvar of our own, not structlog's `bind_contextvars`, whose bind and clear
# (a copy of the whole context, walked) cost several µs of every /v2 request; this is a set and a reset.
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("dockyard_request_id", default=None)
RequestIdToken = contextvars.Token


def bind_request_id(request_id: str) -> RequestIdToken[str | None]:
    """Tag every line logged from here on in this context (one request's task) with its id; the token
    hands it back to `clear_request_context`."""
    return _REQUEST_ID.set(request_id)


def clear_request_context(token: RequestIdToken[str | None] | None = None) -> None:
    """The end of the request `token` was bound for (without one: no request id from here on)."""
    if token is None:
        _REQUEST_ID.set(None)
    else:
        _REQUEST_ID.reset(token)


def _add_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # After structlog's merge_contextvars and as it adds its fields: a key the call names wins.
    request_id = _REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


class PlainConsoleRenderer:
    """What `console` (structlog's ConsoleRenderer without colors, `pad_event_to=0`) renders, the same
    characters, for lines without a stack or an exception (the access log's, one per request): a join
    of the fields, not a formatter object and a StringIO per field (~2/3 of an access-log line's CPU,
    more than answering a cached request). Lines with a stack or an exception go to `console`."""

    _SPECIAL = frozenset({" ", "\t", "=", "\r", "\n", '"', "'"})

    def __init__(self, console: structlog.dev.ConsoleRenderer) -> None:
        self.console = console
        self.level_width = len(max(console.get_default_level_styles(colors=False), key=len))

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        if "stack" in event_dict or "exception" in event_dict or "exc_info" in event_dict:
            return self.console(logger, name, event_dict)
        fields = event_dict  # taken apart, as ConsoleRenderer does
        parts: list[str] = []
        timestamp = fields.pop("timestamp", _NOTHING)
        if timestamp is not _NOTHING:
            parts.append(str(timestamp))
        level = fields.pop("level", _NOTHING)
        if level is not _NOTHING:
            parts.append(f"[{str(level).ljust(self.level_width)}]")
        event = fields.pop("event", _NOTHING)
        if event is not _NOTHING:
            parts.append(str(event))
        for key in ("logger", "logger_name"):
            value = fields.pop(key, _NOTHING)
            if value is not _NOTHING:
                parts.append("[" + str(value) + "]")
        parts += [f"{key}={self._repr(fields[key])}" for key in sorted(fields)]
        return " ".join(part for part in parts if part).rstrip(" ")

    def _repr(self, value: Any) -> str:
        if isinstance(value, str):
            return repr(value) if self._SPECIAL.intersection(value) else str.__str__(value)
        return repr(value)


_NOTHING: Any = object()


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask values under secret-sounding keys, and passwords inside URLs (postgresql://u:PASS@host)."""
    for key, value in event_dict.items():
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str) and "://" in value:
            event_dict[key] = redact_url(value)
    return event_dict


@functools.lru_cache(maxsize=1024)  # log keys are a small set; this runs for every key of every line
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def redact_url(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\g<prefix>{REDACTED}@", text)


class _NamedWriter(structlog.WriteLogger):
    """structlog's line writer, with the name `add_logger_name` reads, as stdlib loggers have."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriterFactory:
    def __init__(self, file: TextIO) -> None:
        self.file = file

    def __call__(self, *args: Any) -> _NamedWriter:
        return _NamedWriter(self.file, str(args[0]) if args else "dockyard")


def _add_static_fields(fields: dict[str, Any]) -> Processor:
    def add(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return add


def _logstash_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # The shape of logrus' logstash formatter, which registry:2 users' pipelines expect.
    event_dict["@timestamp"] = event_dict.pop("timestamp", None)
    event_dict["@version"] = "1"
    event_dict["message"] = event_dict.pop("event", "")
    return event_dict
