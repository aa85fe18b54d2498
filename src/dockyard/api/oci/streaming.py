"""Move request bodies into storage: hash and write in large chunks, off the event loop,
while the next chunk is being received."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request

from dockyard.errors import BlobUploadInvalid, SizeInvalid

T = TypeVar("T")
log = logging.getLogger("dockyard.api.oci")

# Body pieces are handed to a blob-io thread once this many bytes are in: big enough that thread hand-offs
# are amortised (1 MiB pushed at the same rate as 4 MiB); small enough that 8 concurrent 64 MiB pushes
# peaked at 103 MiB RSS per worker, not 171 MiB. (Granian delivers pieces of up to about 400 KiB.)
WRITE_CHUNK = 1024 * 1024
_LENGTH = re.compile(r"[0-9]{1,19}")


class BlobIO:
    """A dedicated pool for blob writes and hashing (which release the GIL)."""

    def __init__(self, workers: int = 16) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob-io")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    # ASCII digits only (str.isdigit also takes "²"), and no more than a signed 64-bit size has.
    if _LENGTH.fullmatch(value) is None:
        raise SizeInvalid("invalid Content-Length header")
    return int(value)


async def receive_into(
    request: Request, write: Callable[[bytes], None], io: BlobIO, keep_tail: bool = False
) -> tuple[int, list[bytes]]:
    """Stream the request body into `write` (called in a worker thread, in order, once per piece the
    server received). Returns the number of bytes and, with `keep_tail`, the last pieces unwritten:
    the caller writes them in the thread hop that records the chunk or commits the upload, one hop
    fewer per request (a 1 MiB body is then written there whole). Raises BlobUploadInvalid if the
    client went away or sent less than it said."""
    expected = declared_length(request)
    parts: list[bytes] = []
    buffered = 0
    total = 0
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            parts.append(chunk)
            buffered += len(chunk)
            total += len(chunk)
            if expected is not None and total > expected:
                raise SizeInvalid("request body is longer than its Content-Length")
            if buffered >= WRITE_CHUNK and not (keep_tail and total == expected):
                # The pieces go as they are, not joined: a join is a copy, on the event loop, into a
                # buffer as big as WRITE_CHUNK.
                batch, parts, buffered = parts, [], 0
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(io.run(write_each, write, batch))
        if pending is not None:
            await pending
            pending = None
        if parts and not keep_tail:
            await io.run(write_each, write, parts)
            parts = []
    except ClientDisconnect:
        # Said here: the access log shows only the 400 that the client, gone, never reads.
        log.info(
            "client disconnected after %d of %s body bytes", total, "?" if expected is None else expected
        )
        raise BlobUploadInvalid("the client disconnected before the whole body arrived") from None
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
    if expected is not None and total != expected:
        raise SizeInvalid(
            "request body is shorter than its Content-Length",
            detail={"expected": expected, "received": total},
        )
    return total, parts


def write_each(write: Callable[[bytes], None], parts: list[bytes]) -> None:
    for part in parts:
        write(part)
