"""Two ways to move the bytes of the same operations: threads with http.client, and asyncio on raw sockets.

Both send large bodies straight from memory (sendall of memoryviews, no copies) and read responses
into one reusable 1 MiB buffer, keeping only the first KEEP_BODY_BYTES. `--self-check` measures which
is faster here; the faster one is the default.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.wire import KEEP_BODY_BYTES, Operation, Request, Response, UnexpectedStatus, parse_head

READ_BUFFER = 1 << 20
BODYLESS_STATUSES = (204, 304)

OperationFactory = Callable[[], Operation]


@dataclass
class LoadResult:
    operations: int = 0
    payload_bytes: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def mib_per_second(self) -> float:
        return self.payload_bytes / (1 << 20) / self.seconds if self.seconds else 0.0

    def record_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message)


class _Keeper:
    """Keeps the head of a response body; counts the rest."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.length = 0

    def add(self, chunk: memoryview) -> None:
        self.length += len(chunk)
        room = KEEP_BODY_BYTES - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]


# --- threads + http.client -------------------------------------------------------------------------------


class HttpClientSession:
    """One keep-alive connection, used by one thread."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.view = memoryview(bytearray(READ_BUFFER))
        self.headers = headers or {}  # sent with every request (e.g. Authorization when seeding)
        self.elsewhere: dict[tuple[str, int], HttpClientSession] = {}  # connections to other origins

    def exchange(self, request: Request) -> Response:
        if request.origin is not None and request.origin != (self.host, self.port):
            # e.g. a redirect to the object store: no registry headers (credentials) go there
            if request.origin not in self.elsewhere:
                self.elsewhere[request.origin] = HttpClientSession(*request.origin)
            return self.elsewhere[request.origin].exchange(request)
        conn = self.conn
        try:
            conn.putrequest(request.method, request.target, skip_accept_encoding=True)
            for name, value in {**self.headers, **request.headers}.items():
                conn.putheader(name, value)
            if request.body or request.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(request.body_length))
            conn.endheaders()
            for part in request.body:
                conn.send(part)
            response = conn.getresponse()
            keeper = _Keeper()
            while count := response.readinto(self.view):
                keeper.add(self.view[:count])
            headers = {name.lower(): value for name, value in response.getheaders()}
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()  # the next request reconnects
            raise
        return Response(response.status, headers, keeper.length, bytes(keeper.kept))

    def close(self) -> None:
        self.conn.close()
        for session in self.elsewhere.values():
            session.close()


def drive(session: HttpClientSession, operation: Operation) -> int:
    """Run one operation to its end; raises on a transport error or an unexpected status."""
    try:
        request = next(operation)
        while True:
            response = session.exchange(request)
            if response.status not in request.expect:
                operation.close()
                raise UnexpectedStatus(request, response)
            request = operation.send(response)
    except StopIteration as done:
        return int(done.value)


def run_threads(
    host: str, port: int, make_operation: OperationFactory, concurrency: int, duration: float
) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker() -> None:
        session = HttpClientSession(host, port)
        try:
            while time.monotonic() < deadline:
                try:
                    moved = drive(session, make_operation())
                except (OSError, ValueError, http.client.HTTPException, UnexpectedStatus) as error:
                    with lock:
                        result.record_error(f"{type(error).__name__}: {error}")
                    continue
                with lock:
                    result.operations += 1
                    result.payload_bytes += moved
        finally:
            session.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result


# --- asyncio on raw non-blocking sockets -----------------------------------------------------------------


class RawAsyncSession:
    """One keep-alive connection on a raw socket, with its own minimal HTTP/1.1 response reader."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)
        self.start = self.end = 0  # unread bytes are buffer[start:end]
        self.elsewhere: dict[tuple[str, int], RawAsyncSession] = {}  # connections to other origins

    async def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        self.start = self.end = 0
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for session in self.elsewhere.values():
            session.close()

    async def _fill(self, sock: socket.socket) -> None:
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buffer):  # compact what is left to the front
            leftover = self.end - self.start
            self.buffer[:leftover] = self.buffer[self.start : self.end]
            self.start, self.end = 0, leftover
        count = await asyncio.get_running_loop().sock_recv_into(sock, self.view[self.end :])
        if count == 0:
            raise ConnectionResetError("server closed the connection")
        self.end += count

    async def _read_until(self, sock: socket.socket, separator: bytes) -> bytes:
        while (found := self.buffer.find(separator, self.start, self.end)) < 0:
            await self._fill(sock)
        line = bytes(self.buffer[self.start : found])
        self.start = found + len(separator)
        return line

    async def _consume(self, sock: socket.socket, count: int, keeper: _Keeper) -> None:
        while count > 0:
            if self.start == self.end:
                await self._fill(sock)
            take = min(count, self.end - self.start)
            keeper.add(self.view[self.start : self.start + take])
            self.start += take
            count -= take

    async def exchange(self, request: Request) -> Response:
        if request.origin is not None and request.origin != (self.host, self.port):
            if request.origin not in self.elsewhere:
                self.elsewhere[request.origin] = RawAsyncSession(*request.origin)
            return await self.elsewhere[request.origin].exchange(request)
        try:
            return await self._exchange(request)
        except OSError:
            self.close()
            raise

    async def _exchange(self, request: Request) -> Response:
        if self.sock is None:
            self.sock = await self._connect()
        sock, loop = self.sock, asyncio.get_running_loop()
        head = request.head_bytes(f"{self.host}:{self.port}")
        if request.body_length <= 64 * 1024:  # one write for small requests
            await loop.sock_sendall(sock, head + b"".join(request.body))
        else:
            await loop.sock_sendall(sock, head)
            for part in request.body:
                await loop.sock_sendall(sock, part)
        status, headers = parse_head(await self._read_until(sock, b"\r\n\r\n"))
        keeper = _Keeper()
        if request.method == "HEAD" or status in BODYLESS_STATUSES or status < 200:
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while size := int((await self._read_until(sock, b"\r\n")).split(b";")[0], 16):
                await self._consume(sock, size, keeper)
                await self._read_until(sock, b"\r\n")
            while await self._read_until(sock, b"\r\n"):  # trailers end with an empty line
                pass
        elif "content-length" in headers:
            await self._consume(sock, int(headers["content-length"]), keeper)
        else:  # body runs to the end of the connection
            try:
                while True:
                    await self._consume(sock, READ_BUFFER, keeper)
            except ConnectionResetError:
                pass
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, keeper.length, bytes(keeper.kept))


async def drive_async(session: RawAsyncSession, operation: Operation) -> int:
    try:
        request = next(operation)
        while True:
            response = await session.exchange(request)
            if response.status not in request.expect:
                operation.close()
                raise UnexpectedStatus(request, response)
            request = operation.send(response)
    except StopIteration as done:
        return int(done.value)


def run_asyncio(
    host: str, port: int, make_operation: OperationFactory, concurrency: int, duration: float
) -> LoadResult:
    result = LoadResult()

    async def worker(deadline: float) -> None:
        session = RawAsyncSession(host, port)
        try:
            while time.monotonic() < deadline:
                try:
                    moved = await drive_async(session, make_operation())
                except (OSError, ValueError, UnexpectedStatus) as error:
                    result.record_error(f"{type(error).__name__}: {error}")
                    continue
                result.operations += 1
                result.payload_bytes += moved
        finally:
            session.close()

    async def main() -> None:
        deadline = time.monotonic() + duration
        await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))

    started = time.monotonic()
    asyncio.run(main())
    result.seconds = time.monotonic() - started
    return result


ENGINES: dict[str, Callable[[str, int, OperationFactory, int, float], LoadResult]] = {
    "threads": run_threads,
    "asyncio": run_asyncio,
}
