"""IP allowlists: which client addresses may use the registry, and which the management API and UI.

`auth.allow_ips` applies to every request; `auth.management_allow_ips` applies, in addition, to
paths under the management prefixes (/api, /ui). An empty list allows everyone. Entries are CIDR
networks or single addresses, IPv4 or IPv6; an IPv4 client reaching a dual-stack socket (seen as
`::ffff:a.b.c.d`) is matched as the IPv4 address it is.

The client address is `scope["client"][0]`: the connection's peer, or, when that peer is one of
`http.trusted_proxies`, the client the proxy names in X-Forwarded-For (api/forwarded.py rewrites the
scope before this middleware runs). Headers from any other peer are ignored: anyone can write them. A
request without a known peer (a Unix socket) is refused whenever a list is set.

Refusals are 403 in the protocol's own format: the OCI error body (code DENIED) for /v2 and the
token endpoint, FastAPI's `{"detail": ...}` for /api, plain text elsewhere. The body names the
address the server saw, so a user behind NAT or a proxy can tell why.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware) because it wraps the /v2 hot path: an
allowed request costs one dictionary lookup of the client address (decisions are cached).
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.api.oci.errors import API_VERSION_HEADER, error_body
from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditRecorder, AuditResult
from dockyard.errors import OCICode

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED_MESSAGE = "access from this address is not allowed"
# One access_denied audit event per address and minute at most: a scanner must not flood the log.
AUDIT_EVERY_SECONDS = 60.0
_AUDIT_MEMORY = 4096  # addresses remembered for that throttle


class InvalidNetwork(ValueError):
    pass


def parse_networks(entries: Sequence[str], key: str = "allowlist") -> tuple[Network, ...]:
    """Parse CIDRs and single addresses; host bits are allowed (10.1.2.3/8 means 10.0.0.0/8)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise InvalidNetwork(
                f"{key}: {entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)"
            ) from None
    return tuple(networks)


def is_allowed(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether `address` (the peer's text form) lies in one of `networks`; empty means everyone."""
    if not networks:
        return True
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


class AllowlistMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        registry_cidrs: Sequence[str],
        management_cidrs: Sequence[str],
        management_prefixes: Sequence[str] = ("/api", "/ui"),
        *,
        oci_prefixes: Sequence[str] = ("/v2", "/token"),
        audit: AuditRecorder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        registry = parse_networks(registry_cidrs, "auth.allow_ips")
        management = parse_networks(management_cidrs, "auth.management_allow_ips")
        self.enabled = bool(registry or management)
        self.management_prefixes = tuple(management_prefixes)
        self.oci_prefixes = tuple(oci_prefixes)
        self.audit = audit
        self._clock = clock
        self._last_audited: dict[str, float] = {}
        # Decisions per (address, is-management): a server sees few distinct clients.
        self._allowed: Callable[[str | None, bool], bool] = lru_cache(maxsize=4096)(
            lambda address, managed: (
                is_allowed(address, registry) and (not managed or is_allowed(address, management))
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else None
        path = scope["path"]
        if self._allowed(address, _under(path, self.management_prefixes)):
            await self.app(scope, receive, send)
            return
        self._audit_denial(address, scope)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        await self._refuse(path, address, scope["method"] == "HEAD", send)

    async def _refuse(self, path: str, address: str | None, head: bool, send: Send) -> None:
        headers: list[tuple[bytes, bytes]]
        if _under(path, self.oci_prefixes):
            body = error_body(OCICode.DENIED, DENIED_MESSAGE, {"client_ip": address})
            headers = [(b"content-type", b"application/json")]
            headers += [(k.lower().encode(), v.encode()) for k, v in API_VERSION_HEADER.items()]
        elif _under(path, self.management_prefixes):
            body = json.dumps({"detail": f"{DENIED_MESSAGE} ({address})"}).encode()
            headers = [(b"content-type", b"application/json")]
        else:
            body = f"{DENIED_MESSAGE} ({address})\n".encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    def _audit_denial(self, address: str | None, scope: Scope) -> None:
        if self.audit is None:
            return
        now = self._clock()
        key = address or ""
        last = self._last_audited.get(key)
        if last is not None and now - last < AUDIT_EVERY_SECONDS:
            return
        if len(self._last_audited) >= _AUDIT_MEMORY:
            self._last_audited.clear()
        self._last_audited[key] = now
        self.audit.record(
            AuditEvent(
                action=AuditAction.ACCESS_DENIED,
                actor="",
                actor_kind=ActorKind.ANONYMOUS,
                result=AuditResult.DENIED,
                client_ip=address,
                detail={"reason": "ip_allowlist", "method": scope.get("method"), "path": scope["path"]},
            )
        )
