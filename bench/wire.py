"""What the load generator sends and gets back, independent of how the bytes move (sans-I/O).

An operation (push a blob, pull a blob) is a generator: it yields Requests, receives Responses, and
returns the number of payload bytes it moved. Each engine (threads, asyncio) drives the same
operations, so the two can be compared on equal terms.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Buffer = bytes | memoryview

KEEP_BODY_BYTES = (
    64 * 1024
)  # bodies up to this size are kept (JSON answers); bigger ones are counted and dropped


@dataclass
class Request:
    method: str
    target: str  # path and query
    headers: dict[str, str] = field(default_factory=dict)
    body: Sequence[Buffer] = ()
    expect: tuple[int, ...] = (200,)
    # Another server than the one under test (host, port), e.g. the object store a 307 points to.
    origin: tuple[str, int] | None = None

    @property
    def body_length(self) -> int:
        return sum(len(part) for part in self.body)

    def head_bytes(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {self.body_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    length: int  # body bytes received
    body: bytes  # the first KEEP_BODY_BYTES of it


Operation = Generator[Request, Response, int]


class UnexpectedStatus(Exception):
    def __init__(self, request: Request, response: Response) -> None:
        detail = response.body[:200].decode("utf-8", "replace")
        super().__init__(f"{request.method} {request.target.split('?')[0]} -> {response.status} {detail}")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of an HTTP/1.1 response head (without the blank line)."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def path_of(location: str) -> str:
    """A Location header as a request target: registries may answer with an absolute URL."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def split_url(url: str) -> tuple[tuple[str, int], str]:
    """An absolute http:// URL as (host, port) and the request target."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"cannot follow {url!r}: the load generator speaks plain http only")
    return (parts.hostname, parts.port or 80), path_of(url)


def with_query(target: str, name: str, value: str) -> str:
    return f"{target}{'&' if '?' in target else '?'}{name}={value}"
