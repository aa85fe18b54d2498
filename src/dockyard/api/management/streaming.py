"""A streamed answer whose body generator is closed when the answer ends, however it ends.

Starlette runs a sync body generator a step at a time in a thread and, when the client goes (or the
portal stops reading), leaves the half-read generator to the garbage collector: the cancellation's
traceback holds it in a reference cycle, so its `finally` (which closes the blob file it reads) runs
only at the next full collection. This one closes it at once, in a thread (closing may do I/O), and
even while the answer is being cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    def __init__(self, content: Iterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._generator = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self._generator, "close", None)
            if close is not None:
                # Not while a step runs: a cancelled step in a thread is waited for, not abandoned.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(close)
