"""One HTTP request to an ASGI app in-process, for unit tests that check routing without a server."""

from __future__ import annotations

from typing import Any


def http_scope(
    method: str,
    path: str,
    raw_path: str | None = None,
    *,
    root_path: str = "/api/v1",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> dict[str, Any]:
    """The scope of a bodiless request, by default under the management API's root path."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": (path if raw_path is None else raw_path).encode(), "root_path": root_path,
        "query_string": b"", "headers": [(b"host", b"localhost"), *headers], "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
    }  # fmt: skip


async def call(app: Any, scope: dict[str, Any], sent: list[dict[str, Any]]) -> None:
    """Run the request; the messages the app sends are appended to `sent` (kept when the app raises)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
