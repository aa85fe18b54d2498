"""Trusted proxies: the client's address, scheme and host as a load balancer in front reports them.

`http.trusted_proxies` lists the CIDRs of the proxies (HAProxy, nginx, a cloud balancer) that talk to
dockyard. Only when the connection's peer is in that list are its forwarding headers read:

- the client address from `X-Forwarded-For`, walked from the right: each hop a trusted proxy appended
  is skipped, and the first address that is not a trusted proxy is the client (anything to its left
  was written by the client and may be forged). `Forwarded` (RFC 7239, its `for=` parameters) is read
  the same way only when no `X-Forwarded-For` came: a proxy that sets one header passes the other
  through from the client, so the one it sets must win;
- the scheme from `X-Forwarded-Proto` (or `Forwarded: proto=`) and the host from `X-Forwarded-Host`
  (or `Forwarded: host=`), their rightmost values: a value a proxy appended is never to the left of
  one a client sent.

The middleware rewrites the ASGI scope before anything else sees it: `scope["client"]` becomes the
client, `scope["scheme"]` and the `Host` header what the client used, and the proxy's own address is
kept in `scope["dockyard.peer"]`. So the login limiter, the audit log, the IP allowlists, the access log
and the token realm in `WWW-Authenticate` all see the same client. With the list empty (the default)
no header is believed and the middleware is not installed at all. A request from a peer outside the
list is left exactly as it came, whatever headers it sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.api.allowlist import Network, parse_networks
from dockyard.api.middleware import PEER_KEY

_SCHEMES = {"http": "http", "https": "https"}
_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}
# A host header a client may see echoed in a URL: a name or address and an optional port, nothing else.
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$")
# One `Forwarded` element's pair: name=token or name="quoted string".
_FORWARDED_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


@dataclass(frozen=True, slots=True)
class ForwardedRequest:
    client: str | None  # None: keep the peer
    scheme: str | None
    host: str | None


class TrustedProxies:
    """Which peers may speak for their clients; decisions per address are cached."""

    def __init__(self, cidrs: Sequence[str]) -> None:
        self.networks: tuple[Network, ...] = parse_networks(cidrs, "http.trusted_proxies")
        self.trusts = lru_cache(maxsize=4096)(self._trusts)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def _trusts(self, address: str | None) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def resolve(self, peer: str | None, headers: Sequence[tuple[bytes, bytes]]) -> ForwardedRequest | None:
        """What the proxy says about its client, or None when `peer` is not trusted (or said nothing)."""
        if not self.trusts(peer):
            return None
        forwarded_for = _joined(headers, b"x-forwarded-for")
        proto = _last(_joined(headers, b"x-forwarded-proto"))
        host = _last(_joined(headers, b"x-forwarded-host"))
        if forwarded_for is None:
            elements = _forwarded_elements(_joined(headers, b"forwarded"))
            hops = [element["for"] for element in elements if "for" in element]
            proto = proto or next((e["proto"] for e in reversed(elements) if "proto" in e), None)
            host = host or next((e["host"] for e in reversed(elements) if "host" in e), None)
        else:
            hops = [hop.strip() for hop in forwarded_for.split(",")]
        client = self._client(hops)
        scheme = _SCHEMES.get(proto.lower()) if proto else None
        host = host if host and _SAFE_HOST.match(host) else None
        if client is None and scheme is None and host is None:
            return None
        return ForwardedRequest(client, scheme, host)

    def _client(self, hops: list[str]) -> str | None:
        """The rightmost hop that is not a trusted proxy; None when there are no usable hops."""
        client = None
        for hop in reversed(hops):
            address = _hop_address(hop)
            if address is None:
                break  # a hop we cannot read: believe nothing left of it; the last good one stands
            client = address
            if not self.trusts(address):
                break
        return client


class ForwardedMiddleware:
    """Outermost middleware: rewrites the scope of requests that came through a trusted proxy."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            forwarded = self.proxies.resolve(peer[0] if peer else None, scope["headers"])
            if forwarded is not None:
                scope = _rewritten(scope, forwarded)
        await self.app(scope, receive, send)


def _rewritten(scope: Scope, forwarded: ForwardedRequest) -> Scope:
    scope = dict(scope)
    scope[PEER_KEY] = scope.get("client")
    if forwarded.client is not None:
        scope["client"] = (forwarded.client, 0)
    if forwarded.scheme is not None:
        websocket = scope["type"] == "websocket"
        scope["scheme"] = _WEBSOCKET_SCHEMES[forwarded.scheme] if websocket else forwarded.scheme
    if forwarded.host is not None:
        host = forwarded.host.encode("latin-1")
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [(b"host", host)]
    return scope


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _hop_address(hop: str) -> str | None:
    """The address in one hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`
    (quotes of a Forwarded value removed). None for `unknown`, obfuscated names and garbage."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    ip = _ip(hop)
    return str(ip) if ip is not None else None


def _joined(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """All values of a header, in order, joined by commas (as RFC 9110 allows); None if absent."""
    values = [value.decode("latin-1") for key, value in headers if key == name]
    return ",".join(values) if values else None


def _last(value: str | None) -> str | None:
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    return parts[-1] if parts else None


def _forwarded_elements(value: str | None) -> list[dict[str, str]]:
    """RFC 7239 elements (comma-separated) of name=value pairs (semicolon-separated), names lowered."""
    if not value:
        return []
    elements: list[dict[str, str]] = [{}]
    position = 0
    while position < len(value):
        match = _FORWARDED_PAIR.match(value, position)
        if match is None:
            break  # malformed: keep what was read so far
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elements[-1].setdefault(name, raw)
        position = match.end()
        if position < len(value):
            separator = value[position]
            position += 1
            if separator == ",":
                elements.append({})
            elif separator != ";":
                break
    return [element for element in elements if element]
