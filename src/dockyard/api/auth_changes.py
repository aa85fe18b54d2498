"""Announce management writes, so every node and worker forgets the logins and tokens it remembered.

Accounts, robots, personal tokens, groups, project members and signing keys all change through the
management API (the CLI talks to it too). Rather than hooking each of those writes, any successful
write under it (POST, PUT, PATCH, DELETE answered 2xx) bumps the change feed's AUTH topic: the caches
of verified tokens, Basic logins and policy answers (`coordination.caches.GenerationCache`) and the
signing key ring (`auth.tokens.KeyRing`) follow that topic. Writes are rare next to pulls, so
forgetting a little too much costs a few password checks, never a stale grant.

The bump is made when the response starts, before the client can see it: by the time an
administrator reads "204 disabled", every node with Redis is about to hear of it (milliseconds).
Logging in changes nothing another process caches, so it announces nothing; logging out ends a session
that every worker may remember (`api.management.security`), so it does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dockyard.auth.changes")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_QUIET_SUFFIXES = ("/login",)


class AnnounceWrites:
    def __init__(self, app: ASGIApp, announce: Callable[[], None]) -> None:
        self.app = app
        self.announce = announce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS or scope["path"].endswith(_QUIET_SUFFIXES):
            await self.app(scope, receive, send)
            return

        async def announcing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                try:
                    self.announce()
                except Exception:  # committed already; other nodes still learn within the caches' TTLs
                    log.exception("could not announce an account change")
            await send(message)

        await self.app(scope, receive, announcing_send)
