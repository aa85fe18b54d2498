"""A TCP relay that paces what a server sends back to the rate of a network link, for benches that
compare transfers from an upstream registry (`bench.proxy_pull --upstream-mbit`): on loopback an
upstream answers at memory speed, which no registry on the other side of a network does.

The relay runs in a process of its own (its CPU does not land on the bench's client or on the server
under test). Every connection shares one link: the bytes coming back from the target, whichever
connection carries them, are paced together at the given rate; what clients send goes through unpaced.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

PIECE = 256 << 10


BURST_SECONDS = 0.01


class Link:
    """One shared link: each piece leaves when the link has carried the ones before it. A link idle for
    a moment may send up to BURST_SECONDS' worth at once, so a late wake-up of the relay (a busy machine)
    costs it no throughput."""

    def __init__(self, bytes_per_second: float) -> None:
        self.bytes_per_second = bytes_per_second
        self.free_at = 0.0

    async def carry(self, size: int) -> None:
        now = time.monotonic()
        self.free_at = max(self.free_at, now - BURST_SECONDS) + size / self.bytes_per_second
        if self.free_at > now:
            await asyncio.sleep(self.free_at - now)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link | None) -> None:
    try:
        while piece := await reader.read(PIECE):
            if link is not None:
                await link.carry(len(piece))
            writer.write(piece)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve(listener: socket.socket, target: tuple[str, int], link: Link) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection(*target)
        await asyncio.gather(
            _pipe(client_reader, target_writer, None), _pipe(target_reader, client_writer, link)
        )

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


def _run(listener: socket.socket, target: tuple[str, int], mbit: float) -> None:
    asyncio.run(_serve(listener, target, Link(mbit * 1e6 / 8)))


@contextmanager
def throttled(url: str, mbit: float) -> Iterator[str]:
    """`url` (http://host:port) behind a link of `mbit` megabits per second: the relay's URL."""
    parts = urlsplit(url)
    target = (parts.hostname or "127.0.0.1", parts.port or 80)
    listener = socket.create_server(("127.0.0.1", 0))
    process = multiprocessing.get_context("fork").Process(
        target=_run, args=(listener, target, mbit), daemon=True
    )
    process.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        process.terminate()
        process.join(5)
        listener.close()
