"""Answer a /v2 request only once its body is in: a refusal sent while the client is still sending
reaches some clients as a reset or never (see `finish_unread_body`)."""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.types import Message, Receive, Scope

# How long the rest of an unread body is read and thrown away before the answer goes, in all and
# waiting for the next piece (nginx's lingering_time and lingering_timeout are 30 s and 5 s); past
# either, the answer goes at once and closes the connection.
DRAIN_SECONDS = 30.0
DRAIN_IDLE_SECONDS = 2.0
_BODY_METHODS = frozenset({"PUT", "PATCH", "POST"})


class BodyWatch:
    """The request's `receive`, noting whether it was called and whether the body has ended (or the
    client has gone)."""

    __slots__ = ("_receive", "finished", "started")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.started = False
        self.finished = False

    async def __call__(self) -> Message:
        self.started = True
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.finished = True
        return message


def watch_body(scope: Scope, receive: Receive) -> BodyWatch | None:
    """A BodyWatch for a request that declares a body; None for the rest (GET and HEAD among them:
    the hot path pays one set lookup)."""
    if scope["method"] not in _BODY_METHODS:
        return None
    headers = dict(scope.get("headers") or ())
    if headers.get(b"transfer-encoding") or headers.get(b"content-length", b"0").strip() not in (b"", b"0"):
        return BodyWatch(receive)
    return None


async def finish_unread_body(scope: Scope, body: BodyWatch, response: Response) -> None:
    """Read and drop what the handler left of the body, then let the answer go. A refusal made from the
    headers (a full quota, a denied push, an unknown upload) and sent while the client is still writing
    is lost to some clients: the server closes with bytes unread, the client's next write meets a reset,
    and containerd 1.6, refused before it started writing, waits on its body pipe forever. Nothing read
    here is kept. The answer goes at once and closes the connection (no unread byte may be taken for the
    next request) to a client waiting for `100 Continue` (it has sent nothing), to one that sends nothing
    for DRAIN_IDLE_SECONDS (a 100 MiB manifest declared and never sent) and to one still sending after
    DRAIN_SECONDS."""
    if body.started or not _expects_continue(scope):
        deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
        try:
            while not body.finished:
                left = deadline - asyncio.get_running_loop().time()
                await asyncio.wait_for(body(), timeout=min(DRAIN_IDLE_SECONDS, max(left, 0.0)))
        except TimeoutError:
            pass
    if not body.finished:
        response.headers["Connection"] = "close"


def _expects_continue(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"expect":
            return bytes(value).strip().lower() == b"100-continue"
    return False
