"""The connections the upstream client makes: to checked addresses only (`AddressGuard`), and within a
deadline per request.

httpcore resolves and connects in its network backend; ours resolves once, checks every address with the
guard and connects to a checked one, so each connection (the first request, every redirect hop, the token
realm) is checked at connect time and DNS rebinding gets no second lookup. TLS still verifies and sends
SNI for the host name of the URL. Its streams bound every read and write by the request's deadline (a
context variable the client sets), so a server trickling bytes cannot stretch a request past its total.
"""

from __future__ import annotations

import functools
import socket
import ssl
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.interfaces import TLSOptions, UpstreamAddressRefused

# Bytes asked of the socket per read: httpcore asks 64 KiB, and each read costs a round through h11 in
# Python. Reading 256 KiB took 40% less CPU to receive a 64 MiB blob (30 ms instead of 50 ms, on the
# bench's VM): the hot path of a first pull through the cache. h11 takes whatever a read returns.
READ_BYTES = 256 << 10

_DEADLINE: ContextVar[float | None] = ContextVar("dockyard_upstream_deadline", default=None)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Every read, write and connect inside the block ends by `seconds` from now (None: no total)."""
    token = _DEADLINE.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None) -> float | None:
    end = _DEADLINE.get()
    if end is None:
        return timeout
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise httpcore.ReadTimeout("the request's total time is up")
    return remaining if timeout is None else min(timeout, remaining)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max(max_bytes, READ_BYTES), _bounded(timeout))

    def can_read_into(self) -> bool:
        """Whether `read_into` works: httpcore's stream over a socket (plain or TLS), not another."""
        return isinstance(getattr(self.inner, "_sock", None), socket.socket)

    def read_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Receive into `buffer` straight from the socket (one copy, no HTTP parsing): the number of
        bytes, 0 when the peer closed. Only where `can_read_into`."""
        sock: socket.socket = self.inner._sock  # type: ignore[attr-defined]
        try:
            sock.settimeout(_bounded(timeout))
            return sock.recv_into(buffer)
        except TimeoutError:
            raise httpcore.ReadTimeout("the upstream stalled") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self.inner.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.guard.resolve(host, port):
            try:
                stream = super().connect_tcp(address, port, _bounded(timeout), local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc  # the next address may answer
                continue
            return DeadlineStream(stream)
        assert failure is not None  # resolve() returns at least one address
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UpstreamAddressRefused("no unix sockets")


# Loading the system's CA store costs ~25 ms of CPU, as much as an argon2 password check, and every
# remote client needs a context: each replication job, endpoint test, scanner call and webhook client.
# One per process and set of options instead; nothing changes a context once made (httpcore sets the
# same ALPN list, HTTP/1.1, on each connection), and one context serves many threads. A CA bundle the
# system updates is read at the next start, as Go programs (distribution) read theirs.
CONTEXTS = 32  # sets of TLS options remembered (each registry endpoint with a CA of its own is one)


@functools.lru_cache(maxsize=CONTEXTS)
def ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    context = ssl.create_default_context()  # the system's CAs, hostname checks on
    if tls.ca_pem:
        context.load_verify_locations(cadata=tls.ca_pem)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def guarded_transport(guard: AddressGuard, tls: TLSOptions) -> httpx.HTTPTransport:
    """An httpx transport whose connections go through the guard (no proxies from the environment)."""
    transport = httpx.HTTPTransport(verify=ssl_context(tls), trust_env=False, retries=0)
    pool = transport._pool
    if not isinstance(pool, httpcore.ConnectionPool):  # pragma: no cover - httpx changed its internals
        raise RuntimeError("unexpected httpx transport: cannot guard its connections")
    # httpcore takes the backend as a constructor argument httpx does not expose; each new connection
    # reads it from the pool, so setting it before the first request covers them all.
    pool._network_backend = GuardedBackend(guard)
    return transport
