"""Announce the management writes that change who may do what, so every node and worker forgets the
logins, tokens and answers it remembered.

Accounts, robots, personal tokens, groups, project members, project visibility and signing keys all
change through the management API (the CLI and the portal talk to it too). Rather than hooking each of
those writes, a successful write under it (POST, PUT, PATCH, DELETE answered 2xx) bumps the change
feed's AUTH topic, unless `QUIET_WRITES` names it as one that changes none of that (a retention policy,
a webhook, a job, a tag). The caches of verified tokens, Basic logins, open sessions and policy answers
(`coordination.caches.GenerationCache`) and the signing key ring (`auth.tokens.KeyRing`) follow that
topic. A write the list does not name announces: forgetting too much costs a few checks, never a stale
grant. tests/unit/api/test_auth_changes.py sorts every write route of the API into quiet or announced
(from the routers themselves), so a new route must be classified.

Each announcement makes every worker check its callers again (a session's row and account, a Basic
login's password hash): the authorization matrix's ~1,200 writes, each announced, cost it thousands of
such checks; most were webhooks, rules and policies.

The bump is made when the response starts, before the client can see it: by the time an
administrator reads "204 disabled", every node with Redis is about to hear of it (milliseconds).
Logging in changes nothing another process caches, so it announces nothing; logging out ends a session
that every worker may remember (`api.management.security`), so it does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dockyard.auth.changes")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})

# Route templates (below the API's mount) whose writes, and those of every route below them, change
# nothing the AUTH topic's caches hold: not an account, credential, group, membership, robot's
# permission, project's existence or visibility, nor a token signing key.
QUIET_WRITES: tuple[str, ...] = (
    "/login",  # opens a session of its own: nothing another process remembers changes
    "/oidc/authorize",  # only starts single sign-on (the callback makes or updates the account)
    "/system/ldap/test",
    "/system/oidc/test",
    "/endpoints",  # remote registries and the credentials dockyard uses there
    "/replication",
    "/jobs",
    "/scanners",
    "/vulndb",
    "/sigstore",  # what verifies images' signatures: pull policies, on their own topic
    "/repositories",  # tags, artifacts, scans: contents, not access
    "/projects/{project}/immutable-rules",
    "/projects/{project}/quota",
    "/projects/{project}/retention",
    "/projects/{project}/scan-settings",
    "/projects/{project}/signing-keys",  # keys that verify images' signatures, not tokens'
    "/projects/{project}/sigstore",
    "/projects/{project}/trust-policy",
    "/projects/{project}/vulndb",
    "/projects/{project}/webhooks",
)


def _pattern(templates: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for the templates and everything below them; a parameter is one path segment."""
    parts = (re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)) for template in templates)
    return re.compile(f"(?:{'|'.join(parts)})(?:/|$)")


_QUIET = _pattern(QUIET_WRITES)


def announces(method: str, path: str) -> bool:
    """Whether a successful `method` on `path` (below the API's mount) changes who may do what."""
    return method not in _READS and _QUIET.match(path) is None


class AnnounceWrites:
    def __init__(self, app: ASGIApp, announce: Callable[[], None]) -> None:
        self.app = app
        self.announce = announce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not announces(scope["method"], _below_mount(scope)):
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


def _below_mount(scope: Scope) -> str:
    """The path below the API's mount (Starlette's Mount leaves `path` whole, `root_path` its prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
