"""A bare loopback TCP (or TLS) server for tests of HTTP clients: each accepted connection handed to a
function of the test's, in a thread of its own, so a test can answer with anything a real server never
sends (a body cut short, a stall, bytes one at a time)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Send = Callable[[socket.socket], None]  # what the server does with each accepted connection


@contextmanager
def raw_server(send: Send, tls: Path | None = None) -> Iterator[str]:
    """A loopback server running `send` on each connection (in a thread of its own), then closing it."""
    listener = socket.create_server(("127.0.0.1", 0))
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "server.crt", tls / "server.key")
    stop = threading.Event()

    def handle(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):  # OSError: the client went away
            send(context.wrap_socket(connection, server_side=True) if context else connection)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
