"""A small-request load generator whose every request names a different random repository.

wrk 4.1 cannot send HEAD (it waits for the body a HEAD answer announces but never sends), and ab and
h2load send one URL, or a list in the same order on every connection (so 64 connections would ask for
the same repository at the same moment, and all but the first would hit a cache). This one keeps `c`
keep-alive connections on one asyncio loop (raw protocol, no HTTP library), each picking a random
repository for every request, and reports requests/s, p99 and errors as JSON on stdout: their count,
their count by kind (`HTTP 503`, `connection lost: ...`) and a few samples, each with the request, the
answer's head and the start of its body, and when it came (seconds into the run), so that a report can
say what they were and the server's log can be searched at that moment.

    python -m bench.randomload HOST PORT METHOD PATH_TEMPLATE COUNT SECONDS CONNECTIONS [HEADER ...]

PATH_TEMPLATE has `{n}`, replaced by a random integer in [0, COUNT) for each request (formatted by
`str.format`, so `{n:05d}` works). It runs in its own process (bench/scale.py starts it), so its CPU
is measured apart from the bench's.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

RESPONSE_END = b"\r\n\r\n"


SAMPLES_PER_KIND = 3
SAMPLE_BYTES = 300


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    measuring: bool = False
    started: float = 0.0  # perf_counter when measuring began

    def error(self, kind: str, detail: str) -> None:
        self.errors += 1
        self.error_kinds[kind] += 1
        if self.error_kinds[kind] <= SAMPLES_PER_KIND:
            at = time.perf_counter() - self.started
            self.error_samples.append(f"at {at:.2f} s: {detail}")


class Connection(asyncio.Protocol):
    def __init__(self, build: RequestBuilder, tally: Tally, head: bool, done: asyncio.Event) -> None:
        self.build = build
        self.tally = tally
        self.head = head
        self.done = done
        self.buffer = bytearray()
        self.started = 0.0
        self.request = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.request = self.build()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(RESPONSE_END)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0 if self.head else _content_length(head)
            total = end + len(RESPONSE_END) + length
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            answer = bytes(self.buffer[:total])
            del self.buffer[:total]
            self._completed(status, answer)

    def _completed(self, status: int, answer: bytes) -> None:
        if self.tally.measuring:
            latency = time.perf_counter() - self.started
            self.tally.latencies.append(latency)
            if not 200 <= status < 300:
                request_line = self.request.split(b"\r\n", 1)[0].decode(errors="replace")
                shown = answer[:SAMPLE_BYTES].decode(errors="replace").replace("\r\n", " | ")
                self.tally.error(f"HTTP {status}", f"{request_line} -> {shown} ({latency * 1000:.0f} ms)")
        if self.done.is_set():
            assert self.transport is not None
            self.transport.close()
            return
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.is_set() and self.tally.measuring:
            waiting = time.perf_counter() - self.started
            request_line = self.request.split(b"\r\n", 1)[0].decode(errors="replace")
            self.tally.error(
                f"connection lost: {exc or 'closed by the server'}",
                f"{request_line} -> connection lost after {waiting * 1000:.0f} ms ({exc!r})",
            )


def _content_length(head: bytes) -> int:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    start = at + len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    return int(head[start : stop if stop >= 0 else len(head)])


class RequestBuilder:
    def __init__(self, host: str, method: str, template: str, count: int, headers: list[str]) -> None:
        self.prefix = f"{method} ".encode()
        self.suffix = ("".join(f"\r\n{h}" for h in [f"Host: {host}", *headers]) + "\r\n\r\n").encode()
        self.suffix = b" HTTP/1.1" + self.suffix
        self.template = template
        self.count = count

    def __call__(self) -> bytes:
        path = self.template.format(n=random.randrange(self.count))
        return self.prefix + path.encode() + self.suffix


async def run(
    host: str,
    port: int,
    method: str,
    template: str,
    count: int,
    seconds: float,
    connections: int,
    headers: list[str],
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    tally = Tally()
    done = asyncio.Event()
    build = RequestBuilder(f"{host}:{port}", method, template, count, headers)
    transports = []
    for _ in range(connections):
        transport, _protocol = await loop.create_connection(
            lambda: Connection(build, tally, method == "HEAD", done), host, port
        )
        transports.append(transport)
    await asyncio.sleep(0.2)  # every connection under way before the clock starts
    tally.started = time.perf_counter()
    tally.measuring = True
    await asyncio.sleep(seconds)
    tally.measuring = False
    elapsed = time.perf_counter() - tally.started
    done.set()
    await asyncio.sleep(0.1)
    for transport in transports:
        transport.close()
    latencies = sorted(tally.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else None
    return {
        "requests": len(latencies),
        "requests_per_second": len(latencies) / elapsed,
        "p99_ms": p99,
        "errors": tally.errors,
        "error_kinds": dict(tally.error_kinds),
        "error_samples": tally.error_samples,
    }


def main(argv: list[str]) -> int:
    host, port, method, template, count, seconds, connections, *headers = argv
    result = asyncio.run(
        run(host, int(port), method, template, int(count), float(seconds), int(connections), headers)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
