from __future__ import annotations

import logging

import structlog

from dockyard.audit.interfaces import ActorKind
from dockyard.observability.logging import (
    PlainConsoleRenderer,
    bind_request_id,
    clear_request_context,
    get_logger,
    redact_url,
)
from tests.unit.observability.capture import captured_logs


def test_json_lines_carry_level_logger_request_id_and_static_fields() -> None:
    with captured_logs("info", "json", fields={"service": "registry"}) as logs:
        bind_request_id("req-123")
        get_logger("dockyard.test").info("blob.committed", digest="sha256:abc", size=3)
        logging.getLogger("some.library").warning("disk %s is %d%% full", "/data", 91)
        clear_request_context()
        get_logger("dockyard.test").info("after")
    first, second, third = logs.json_lines()
    assert first["event"] == "blob.committed"
    assert first["level"] == "info"
    assert first["logger"] == "dockyard.test"
    assert first["request_id"] == "req-123"
    assert first["service"] == "registry"
    assert (first["digest"], first["size"]) == ("sha256:abc", 3)
    assert "timestamp" in first
    assert second["event"] == "disk /data is 91% full"  # stdlib logging goes through the same renderer
    assert second["level"] == "warning"
    assert second["request_id"] == "req-123"
    assert "request_id" not in third


def test_level_filters_both_structlog_and_stdlib() -> None:
    with captured_logs("warn", "json") as logs:
        get_logger("dockyard.test").info("hidden")
        logging.getLogger("lib").info("hidden too")
        get_logger("dockyard.test").warning("shown")
    assert [line["event"] for line in logs.json_lines()] == ["shown"]


def test_secrets_are_masked() -> None:
    with captured_logs("info", "json") as logs:
        get_logger("dockyard.test").info(
            "connecting",
            password="hunter2",
            http_secret="s3cret",
            Authorization="Bearer abc.def",
            database_url="postgresql://dockyard:pa55word@127.0.0.1:5432/dockyard",
        )
        logging.getLogger("lib").error("cannot reach redis://:r3dis@127.0.0.1:6379/0")
    line, stdlib_line = logs.json_lines()
    assert line["password"] == line["http_secret"] == line["Authorization"] == "[redacted]"
    assert line["database_url"] == "postgresql://dockyard:[redacted]@127.0.0.1:5432/dockyard"
    for secret in ("hunter2", "s3cret", "abc.def", "pa55word", "r3dis"):
        assert secret not in logs.text
    assert "redis://:[redacted]@127.0.0.1:6379/0" in stdlib_line["event"]


def test_logstash_shape() -> None:
    with captured_logs("info", "logstash") as logs:
        get_logger("dockyard.test").info("hello")
    (line,) = logs.json_lines()
    assert line["message"] == "hello"
    assert line["@version"] == "1"
    assert line["@timestamp"].endswith("Z")
    assert "event" not in line


def test_text_format_is_one_readable_line_per_event() -> None:
    with captured_logs("info", "text") as logs:
        bind_request_id("abc")
        get_logger("dockyard.test").info("upload.started", repository="library/alpine")
    (line,) = logs.text.splitlines()
    assert "upload.started" in line
    assert "repository=library/alpine" in line
    assert "request_id=abc" in line
    assert not line.lstrip().startswith("{")


def test_exceptions_are_rendered_in_json() -> None:
    with captured_logs("info", "json") as logs:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            get_logger("dockyard.test").exception("failed")
    (line,) = logs.json_lines()
    assert "RuntimeError: boom" in line["exception"]


def test_redact_url_leaves_urls_without_passwords_alone() -> None:
    assert redact_url("https://registry.example.test/v2/") == "https://registry.example.test/v2/"
    assert redact_url("s3://key:secret@bucket") == "s3://key:[redacted]@bucket"


def test_text_exceptions_are_plain_tracebacks_without_locals() -> None:
    # Rich tracebacks (every frame's locals, highlighted source) took seconds per error on the event
    # loop, and printed locals such as passwords.
    with captured_logs("info", "text") as logs:
        try:
            password = "hunter2-secret"
            raise RuntimeError(f"boom {len(password)}")
        except RuntimeError:
            logging.getLogger("dockyard.test").exception("failed")
    assert "Traceback (most recent call last):" in logs.text
    assert "RuntimeError: boom 14" in logs.text
    assert "hunter2-secret" not in logs.text
    assert "╭" not in logs.text


def test_text_lines_are_what_structlogs_console_renders() -> None:
    """The text format's fast path (PlainConsoleRenderer) writes the very characters structlog's
    ConsoleRenderer writes, for every kind of field; lines with a stack go to ConsoleRenderer."""
    console = structlog.dev.ConsoleRenderer(
        colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
    )
    plain = PlainConsoleRenderer(console)
    events: list[dict[str, object]] = [
        {
            "timestamp": "2026-12-07T05:00:00.000001Z",
            "level": "info",
            "event": "request",
            "logger": "dockyard.access",
            "method": "GET",
            "route": "/v2/{name:path}/manifests/{reference}",
            "path": "/v2/a/b/manifests/latest",
            "status": 200,
            "duration_ms": 0.12,
            "request_id": "0123456789abcdef",
            "client": "127.0.0.1:40000",
        },
        {
            "level": "warning",
            "event": "has spaces in it",
            "spaces": "a b",
            "quote": 'say "hi"',
            "apostrophe": "it's",
            "equals": "a=b",
            "tab": "a\tb",
            "newline": "a\nb",
            "empty": "",
            "kind": ActorKind.USER,
            "nothing": None,
            "items": [1, "two"],
            "flag": True,
        },
        {"event": "", "level": "critical", "logger_name": "some.library", "z": 1, "a": 2},
        {"event": "no level, no time"},
        {"timestamp": "t", "level": "debug", "event": ActorKind.ROBOT, "logger": ActorKind.SYSTEM},
        {"level": "error", "event": "with a stack", "stack": "Stack (most recent call last):\n  here"},
    ]
    for event in events:
        assert plain(None, "info", dict(event)) == console(None, "info", dict(event))
